#!/bin/sh
# Installs or upgrades Ombre as a system service on Raspberry Pi OS or Debian 12+:
#   sudo deploy/install.sh [--source DIR] [--extras LIST] [--root DIR] [--no-systemd]
#
# - creates the system user `ombre` (no login, no home of its own);
# - installs the project from --source (default: this script's repository) into the
#   virtual environment /opt/ombre/venv, replacing the previous version, with the
#   connectors of --extras (default: all; e.g. `opcua,influx`, or `none` for MQTT and
#   SQLite only) at the versions of the source's requirements.lock;
# - writes /etc/ombre/plant.yaml from deploy/systemd/plant.yaml only when it is absent;
# - installs ombre.service (the gateway with the API, one process) into
#   /usr/local/lib/systemd/system, enables it and (re)starts it.
# Running it again upgrades: /etc/ombre and the data in /var/lib/ombre (created by
# systemd's StateDirectory=) are left as they are. An install by an older version of
# this script had its units in /etc/systemd/system and a second unit, ombre-api.service:
# the upgrade removes them. The Debian package (`make deb`) is the other way to install.
#
# --root DIR installs under DIR instead of / (tests, image builders): the user is
# added to DIR/etc/passwd, and systemctl is not called. --no-systemd skips systemctl.
set -eu

usage() {
    echo "usage: $0 [--source DIR] [--extras LIST] [--root DIR] [--no-systemd]" >&2
    exit 2
}

source_dir=$(CDPATH='' cd -- "$(dirname -- "$0")/.." && pwd)
root=/
extras=all
systemd=yes
while [ $# -gt 0 ]; do
    case $1 in
        --source) [ $# -ge 2 ] || usage; source_dir=$2; shift 2 ;;
        --extras) [ $# -ge 2 ] || usage; extras=$2; shift 2 ;;
        --root) [ $# -ge 2 ] || usage; root=$2; shift 2 ;;
        --no-systemd) systemd=no; shift ;;
        *) usage ;;
    esac
done
root=${root%/}
[ -z "$root" ] || systemd=no

say() { echo "ombre install: $*"; }
fail() { echo "ombre install: $*" >&2; exit 1; }

[ "$(id -u)" = 0 ] || fail "run it as root (sudo $0)"
if [ ! -f "$source_dir/pyproject.toml" ] || [ ! -d "$source_dir/deploy/systemd" ]; then
    fail "--source $source_dir is not an Ombre source tree (no pyproject.toml, deploy/systemd)"
fi
python3 -c 'import sys; sys.exit(sys.version_info < (3, 11))' \
    || fail "Ombre needs Python 3.11 or newer; found $(python3 --version 2>&1)"
if ! python3 -c 'import ensurepip' 2>/dev/null; then
    say "installing python3-venv"
    apt-get update
    apt-get install -y --no-install-recommends python3-venv
fi

# The user: looked up in the target's own /etc/passwd, so --root never touches the host's.
passwd_entry() { awk -F: -v u=ombre '$1 == u' "$root/etc/passwd"; }
if [ -z "$(passwd_entry)" ]; then
    say "creating the system user ombre"
    useradd --prefix "${root:-/}" --system --user-group --home-dir /var/lib/ombre \
        --no-create-home --shell /usr/sbin/nologin --comment "Ombre gateway" ombre
fi
gid=$(passwd_entry | cut -d: -f4)

venv=$root/opt/ombre/venv
if [ ! -x "$venv/bin/python" ]; then
    say "creating $venv"
    python3 -m venv "$venv"
fi
target=$source_dir
[ "$extras" = none ] || target="${source_dir}[${extras}]"
say "installing Ombre from $target into $venv"
"$venv/bin/pip" install --quiet --disable-pip-version-check --upgrade \
    -c "$source_dir/requirements.lock" "$target"

# The config directory is root's; the service's group may read it (ombre.env: root only).
install -d -m 0750 -o 0 -g "$gid" "$root/etc/ombre"
if [ -e "$root/etc/ombre/plant.yaml" ]; then
    say "keeping $root/etc/ombre/plant.yaml"
else
    say "writing the starter config $root/etc/ombre/plant.yaml"
    install -m 0640 -o 0 -g "$gid" "$source_dir/deploy/systemd/plant.yaml" \
        "$root/etc/ombre/plant.yaml"
fi

# The unit is the project's: replaced on upgrade (local changes go in drop-ins,
# `systemctl edit ombre`), and kept out of /etc/systemd/system, the administrator's.
units=$root/usr/local/lib/systemd/system
install -d -m 0755 "$units"
install -m 0644 "$source_dir/deploy/systemd/ombre.service" "$units/ombre.service"
# What older versions of this script installed (ombre-api.service has become `ombre run
# --api` in ombre.service), known by their first line; a unit an administrator wrote
# there stays.
for unit in ombre.service ombre-api.service; do
    old=$root/etc/systemd/system/$unit
    if [ -f "$old" ] && head -n 1 "$old" | grep -q '^# Ombre '; then
        if [ "$systemd" = yes ]; then systemctl disable --now "$unit" 2>/dev/null || true; fi
        say "removing $old, installed by an older version"
        rm -f "$old"
    fi
done

if [ "$systemd" = yes ]; then
    systemctl daemon-reload
    systemctl enable ombre.service
    systemctl restart ombre.service
    say "running; status: systemctl status ombre; first admin token (on the first start):"
    say "  sudo cat /var/lib/ombre/first-admin-token   # then delete the file"
else
    say "units installed, systemctl not called (--root or --no-systemd)"
fi
