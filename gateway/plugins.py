"""The contract between the core and a connector plug-in.

A connector registers one Plugin per source or sink type as a Python entry point in
the group `ombre.sources` or `ombre.sinks`, named after its config's `type` (Telegraf's
`inputs.Add`, a Home Assistant integration's manifest): adding a protocol touches no
core file. The composition root (ombre/) loads the entry points, builds the config
file's union of source and sink configs from them, and calls `build` for each
configured connector. A plug-in's module (connectors/<name>_plugin.py) holds this
object and imports only its config model (connectors/<name>_config.py), so loading it
costs no protocol stack: `build`, `check` and the commands import theirs when called,
and `requires` names them so a missing extra is reported before that."""

from __future__ import annotations

import argparse
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Generic, TypeAlias, TypeVar

from gateway.config import ConnectorConfig, Plant
from gateway.types import SignalRegistry, Sink, Source

SOURCES = "ombre.sources"  # the entry point groups
SINKS = "ombre.sinks"
EXIT_OK = 0  # what every `ombre` command returns
EXIT_USAGE = 1  # the command cannot do what was asked (unknown signal, no store)
EXIT_CONFIG = 2  # the config file cannot be used (argparse also exits 2 on bad usage)

C = TypeVar("C", bound=ConnectorConfig)
T = TypeVar("T", Source, Sink)

# Writes one entry in the audit log: (actor, action, target, details); actor None is the
# person at the console (a command). Blocking: call it from a worker thread in a loop.
Audit = Callable[[str | None, str, str, dict[str, Any]], None]
Commands: TypeAlias = "argparse._SubParsersAction[argparse.ArgumentParser]"


@dataclass(frozen=True, slots=True)
class BuildContext:
    """What the composition root hands a plug-in: the validated config (the plant,
    `data_dir`, `runtime`), its signal registry, and the audit log's writer bound to
    that config (None when the shadow, which keeps the log, is disabled)."""

    plant: Plant
    registry: SignalRegistry
    audit: Audit | None = None


# A command's way to its config: the validated file at `path` as a BuildContext, or
# None after every problem in it was printed to stderr.
Load = Callable[[Path], BuildContext | None]


@dataclass(frozen=True, slots=True)
class Plugin(Generic[C, T]):
    """One source or sink type.

    - `config`: its pydantic model, whose `type` is `Literal["<entry point name>"]`.
    - `build(config, context)`: the connector (a Source or a Sink), importing its
      protocol stack; called once per configured block at start-up.
    - `sample`: a config block (YAML, a list item as under `sources:` or `sinks:`)
      that `ombre check` accepts in a plant whose one machine is `press-1`, with a
      number signal `temperature` and a string signal `state` (tests/ombre/
      test_plugins.py checks every installed plug-in's; ${INFLUX_TOKEN} is set).
    - `docs`: the page documenting it, relative to the repository (docs/...).
    - `extra`, `requires`: the `pip install 'ombre[<extra>]'` that provides the
      modules in `requires`; a configured block whose modules are missing is a config
      error naming the extra, and `check` and `build` are not called.
    - `check(config, context)`: checks the block against the plant after the whole file
      validated; raises InvalidKeyError (its loc from the block) or ValueError (about
      the block), which `ombre check` reports with the file, line and key path.
    - `add_commands(commands, load)`: adds its `ombre` subcommands (`ombre browse`);
      a command finds its config through `load`."""

    config: type[C]
    build: Callable[[C, BuildContext], T]
    sample: str
    docs: str
    extra: str | None = None
    requires: tuple[str, ...] = ()
    check: Callable[[C, BuildContext], None] | None = None
    add_commands: Callable[[Commands, Load], None] | None = None


SourcePlugin = Plugin[Any, Source]
SinkPlugin = Plugin[Any, Sink]
