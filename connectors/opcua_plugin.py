"""The OPC UA source's plug-in (`type: opcua`, gateway/plugins.py), on asyncua (`pip
install 'ombre[opcua]'`), with its `ombre trust` and `ombre browse` commands."""

from __future__ import annotations

import functools
from typing import Any

from connectors.opcua_config import OpcUaSourceConfig
from gateway.plugins import Audit, BuildContext, Commands, Load, Plugin
from gateway.types import Source


def _build(config: OpcUaSourceConfig, context: BuildContext) -> Source:
    # asyncua and its crypto stack cost ~20 MB of RSS: loaded only when configured.
    from connectors.opcua import OpcUaSource  # noqa: PLC0415

    on_rejected = None if context.audit is None else functools.partial(_rejected, context.audit)
    return OpcUaSource(config, context.plant, context.registry, context.plant.runtime,
                       on_rejected)


def _rejected(audit: Audit, source: str, endpoint: str, details: dict[str, str]) -> None:
    """Records that the running gateway's source refused the server certificate at
    `endpoint` (details: its subject, SHA-256 fingerprint and the file it was saved as,
    for `ombre trust`)."""
    audit(f"source:{source}", "opcua.certificate_rejected", endpoint, dict[str, Any](details))


def _check(config: OpcUaSourceConfig, context: BuildContext) -> None:
    from connectors.opcua_items import resolve_nodes  # noqa: PLC0415 - asyncua

    resolve_nodes(config, context.plant, context.registry)


def _add_commands(commands: Commands, load: Load) -> None:
    from connectors.opcua_cli import add_opcua_commands  # noqa: PLC0415 - asyncua on use

    add_opcua_commands(commands, load)


PLUGIN: Plugin[OpcUaSourceConfig, Source] = Plugin(
    OpcUaSourceConfig, _build, check=_check, add_commands=_add_commands, extra="opcua",
    requires=("asyncua",), docs="docs/connectors/opcua.md", sample="""\
- type: opcua
  name: plc
  endpoint: opc.tcp://192.168.0.10:4840
  security: {mode: SignAndEncrypt, policy: Basic256Sha256}
  nodes:
    - {machine: press-1, signal: temperature, node_id: "ns=2;s=Press1.Temp"}
    - browse_path: Objects/Machines/{machine}/Counters/{signal}
""")
