#!/bin/sh
# Entry point of the mosquitto container: writes the password file from the
# environment (compose.yaml passes MQTT_PASSWORD and MQTT_MACHINES_PASSWORD from .env),
# then runs the broker in the foreground.
set -eu
passwd=/mosquitto/data/passwd
umask 077
: > "$passwd"
mosquitto_passwd -b "$passwd" ombre "$MQTT_PASSWORD"
mosquitto_passwd -b "$passwd" machines "$MQTT_MACHINES_PASSWORD"
chown mosquitto:mosquitto "$passwd"
exec mosquitto -c /mosquitto/config/mosquitto.conf
