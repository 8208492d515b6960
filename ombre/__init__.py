"""The composition root: the `ombre` command and the assembly of a running Ombre from
its config file and the connector plug-ins. Nothing below imports it."""
