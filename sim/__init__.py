"""The simulated shop floor behind `ombre demo`: machines that speak real OPC UA and
MQTT, scripted faults, and a clock that can run faster than the wall clock.

It is a package of its own, beside `gateway/` and `connectors/` rather than inside
them, because it is the *other side* of the wire: the gateway's runtime never imports it
(only the `ombre` command line does, for `ombre demo`), and it talks to the gateway only
through a real OPC UA server and a real MQTT broker."""
