"""OPC UA monitored items: the configured nodes resolved against the plant (node ids
at start-up, browse paths against what the server has), the CreateMonitoredItems
requests built from them, and the buffer that turns data-change notifications into
readings, events and quarantine records.

No I/O. A node's client handle is its index in the resolved list, so a notification
maps to its signal with one list lookup. The buffer is used from one event loop only.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import numpy as np
from asyncua import ua
from asyncua.ua.attribute_ids import AttributeIds
from asyncua.ua.uaerrors import UaError

from connectors.opcua_companion import COMPANION_PATHS
from connectors.opcua_config import DeadbandConfig, OpcUaSourceConfig
from connectors.opcua_paths import PathPattern
from gateway.config import Plant
from gateway.config_base import InvalidKeyError
from gateway.types import Batch, Event, Quality, QuarantineRecord, SignalRegistry

EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
ONE_US = timedelta(microseconds=1)
HEAD_BYTES = 64
_BAD = int(Quality.BAD)
_UNCERTAIN = int(Quality.UNCERTAIN)
_TS_SERVER = int(Quality.TS_SERVER)
_TS_RECEIVED = int(Quality.TS_RECEIVED)
_DEADBAND = {"absolute": ua.DeadbandType.Absolute, "percent": ua.DeadbandType.Percent}


@dataclass(frozen=True, slots=True)
class MonitoredNode:
    """One configured node with its settings resolved (node override, else source)."""

    text: str  # the node id as configured, used in logs and quarantine records
    node_id: ua.NodeId
    signal_id: int
    machine: str
    signal: str
    is_string: bool  # a `type: string` signal: values travel as events
    sampling_interval_ms: float
    queue_size: int
    deadband: DeadbandConfig | None


@dataclass(frozen=True, slots=True)
class PathNodes:
    """A browse-path pattern whose matching variables become nodes at each connect."""

    text: str  # where it came from: the pattern as configured, or a companion spec
    pattern: PathPattern
    machine: str | None  # fixed, when the pattern has no {machine}
    signal: str | None  # fixed, when the pattern has no {signal}
    sampling_interval_ms: float
    queue_size: int
    deadband: DeadbandConfig | None


@dataclass(frozen=True, slots=True)
class NodePlan:
    """The nodes known from the config, and the patterns to resolve on the server."""

    fixed: list[MonitoredNode]
    paths: list[PathNodes]
    types: Mapping[tuple[str, str], str]  # (machine, signal) -> the plant signal's type
    folded: Mapping[str, str]  # machine id case-folded -> machine id

    def signal_id(self, registry: SignalRegistry, machine: str, signal: str
                  ) -> tuple[str, int | None]:
        """The plant machine a browse name names (exactly, else ignoring case), and
        the signal's id, None when the plant has no such signal."""
        signal_id = registry.id_of(machine, signal)
        if signal_id is None:
            machine = self.folded.get(machine.casefold(), machine)
            signal_id = registry.id_of(machine, signal)
        return machine, signal_id


def resolve_nodes(config: OpcUaSourceConfig, plant: Plant,
                  registry: SignalRegistry) -> NodePlan:
    """The source's node ids and patterns in config order, then its companion
    specifications' patterns; InvalidKeyError naming the first bad key."""
    types = {(m.id, s.name): s.type for m in plant.machines() for s in m.signals}
    machines = {m.id for m in plant.machines()}
    fixed, paths = [], []
    for i, n in enumerate(config.nodes):
        settings = (n.sampling_interval_ms if n.sampling_interval_ms is not None
                    else config.sampling_interval_ms,
                    n.queue_size if n.queue_size is not None else config.queue_size,
                    n.deadband if n.deadband is not None else config.deadband)
        if n.browse_path is not None:
            try:
                pattern = PathPattern.parse(n.browse_path)
            except ValueError as exc:
                raise InvalidKeyError(("nodes", i, "browse_path"), str(exc)) from None
            if n.machine is not None and n.machine not in machines:
                raise InvalidKeyError(("nodes", i, "machine"), "expected a machine of the "
                                      f"plant, found {n.machine!r}")
            if n.machine is not None and n.signal is not None and \
                    registry.id_of(n.machine, n.signal) is None:
                raise InvalidKeyError(("nodes", i, "signal"), "expected a signal declared in "
                                      f"the plant, found {n.machine}/{n.signal}")
            paths.append(PathNodes(n.browse_path, pattern, n.machine, n.signal, *settings))
            continue
        assert n.node_id is not None  # the config requires machine and signal with it
        assert n.machine is not None
        assert n.signal is not None
        signal_id = registry.id_of(n.machine, n.signal)
        if signal_id is None:
            raise InvalidKeyError(("nodes", i, "signal"), "expected a signal declared in the "
                                  f"plant, found {n.machine}/{n.signal}")
        try:
            node_id = ua.NodeId.from_string(n.node_id)
        except (ValueError, UaError) as exc:
            raise InvalidKeyError(("nodes", i, "node_id"),
                                  f"cannot parse {n.node_id!r}: {exc}") from None
        fixed.append(MonitoredNode(n.node_id, node_id, signal_id, n.machine, n.signal,
                                   types[(n.machine, n.signal)] == "string", *settings))
    for spec in config.companion:
        paths += [PathNodes(f"{spec}: {path}", PathPattern.parse(path), None, signal,
                            config.sampling_interval_ms, config.queue_size, None)
                  for path, signal in COMPANION_PATHS[spec]]
    return NodePlan(fixed, paths, types, {m.casefold(): m for m in machines})


def match_paths(plan: NodePlan, registry: SignalRegistry,
                variables: Sequence[tuple[str, ua.NodeId]]
                ) -> tuple[list[MonitoredNode], list[str]]:
    """The plan's fixed nodes, then each variable (path, node id) that a pattern maps
    to a plant signal not already fed by an earlier node (the first pattern that
    matches a variable wins); and, described, the matches naming no plant signal."""
    nodes, unmapped = list(plan.fixed), []
    taken = {n.signal_id for n in nodes}
    for path, node_id in variables:
        for entry in plan.paths:
            names = entry.pattern.match(path)
            if names is None:
                continue
            signal = names.get("signal", entry.signal or "")
            machine, signal_id = plan.signal_id(
                registry, names.get("machine", entry.machine or ""), signal)
            if signal_id is None:
                unmapped.append(f"{path} ({entry.text}) -> {machine}/{signal}")
            elif signal_id not in taken:
                taken.add(signal_id)
                nodes.append(MonitoredNode(
                    node_id.to_string(), node_id, signal_id, machine, signal,
                    plan.types[(machine, signal)] == "string", entry.sampling_interval_ms,
                    entry.queue_size, entry.deadband))
            break
    return nodes, unmapped


def item_request(handle: int, node: MonitoredNode) -> ua.MonitoredItemCreateRequest:
    """A Reporting item on the node's Value, with the node's index as client handle."""
    params = ua.MonitoringParameters()
    params.ClientHandle = handle
    params.SamplingInterval = node.sampling_interval_ms
    params.QueueSize = node.queue_size
    params.DiscardOldest = True
    if node.deadband is not None and not node.is_string:
        params.Filter = ua.DataChangeFilter(
            Trigger=ua.DataChangeTrigger.StatusValue,
            DeadbandType=_DEADBAND[node.deadband.type], DeadbandValue=node.deadband.value)
    item = ua.ReadValueId()
    item.NodeId = node.node_id
    item.AttributeId = AttributeIds.Value
    request = ua.MonitoredItemCreateRequest()
    request.ItemToMonitor = item
    request.MonitoringMode = ua.MonitoringMode.Reporting
    request.RequestedParameters = params
    return request


def to_ns(ts: datetime) -> int:
    """An aware UTC datetime as int64 nanoseconds (asyncua decodes to microseconds)."""
    return (ts - EPOCH) // ONE_US * 1000


class NotificationBuffer:
    """Columnar lists filled by the publish callback and emptied by `take`."""

    def __init__(self, source: str, nodes: Sequence[MonitoredNode]) -> None:
        self._source = source
        self._nodes = nodes
        self._clear()

    def _clear(self) -> None:
        self._ts: list[int] = []
        self._ids: list[int] = []
        self._values: list[float] = []
        self._quality: list[int] = []
        self.events: list[Event] = []
        self.quarantined: list[QuarantineRecord] = []

    def __len__(self) -> int:
        return len(self._ts) + len(self.events) + len(self.quarantined)

    def add(self, items: Sequence[ua.MonitoredItemNotification], received_ns: int) -> None:
        """Append one DataChangeNotification's items; never raises on a bad value."""
        nodes, n_nodes = self._nodes, len(self._nodes)
        ts_append, id_append = self._ts.append, self._ids.append
        value_append, quality_append = self._values.append, self._quality.append
        for item in items:
            handle = item.ClientHandle
            if not 0 <= handle < n_nodes:
                continue  # not ours: the source checks the link's generation before this
            node, dv = nodes[handle], item.Value
            status = dv.StatusCode.value if dv.StatusCode is not None else 0
            severity = status >> 30  # 0 good, 1 uncertain, 2 and 3 bad
            quality = _BAD if severity >= 2 else _UNCERTAIN if severity == 1 else 0
            if dv.SourceTimestamp is not None:
                ts_ns = to_ns(dv.SourceTimestamp)
            elif dv.ServerTimestamp is not None:
                ts_ns, quality = to_ns(dv.ServerTimestamp), quality | _TS_SERVER
            else:
                ts_ns, quality = received_ns, quality | _TS_RECEIVED
            variant = dv.Value
            value = variant.Value if variant is not None else None
            if node.is_string:
                self.events.append(Event(ts_ns, node.machine, node.signal,
                                         None if quality & _BAD else _event_value(value),
                                         quality))
                continue
            if quality & _BAD:
                number = math.nan
            elif type(value) is float or type(value) is int or type(value) is bool:
                number = float(value)
            else:
                self._quarantine(node, variant, received_ns)
                continue
            ts_append(ts_ns)
            id_append(node.signal_id)
            value_append(number)
            quality_append(quality)

    def _quarantine(self, node: MonitoredNode, variant: ua.Variant | None,
                    received_ns: int) -> None:
        kind = variant.VariantType.name if variant is not None else "no value"
        value = variant.Value if variant is not None else None
        self.quarantined.append(QuarantineRecord(
            received_ns, self._source, node.text, repr(value)[:HEAD_BYTES].encode(),
            f"expected a number for {node.machine}/{node.signal}, found {kind}", node.signal_id))

    def take(self) -> tuple[Batch, list[Event], list[QuarantineRecord]]:
        """Everything buffered, as a batch, events and records; the buffer is empty after."""
        batch = Batch(np.array(self._ts, np.int64), np.array(self._ids, np.int32),
                      np.array(self._values, np.float64), np.array(self._quality, np.uint8))
        events, quarantined = self.events, self.quarantined
        self._clear()
        return batch, events, quarantined


def _event_value(value: object) -> str | float | int | bool | None:
    if value is None or isinstance(value, str | float | int | bool):
        return value
    if isinstance(value, ua.LocalizedText):
        return value.Text
    return str(value)
