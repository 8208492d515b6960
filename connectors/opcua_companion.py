"""OPC UA companion specifications as data: the browse paths at which a server that
implements one exposes a machine's state, mode and part counter, and the plant
signal each feeds. The signal names are the shadow's defaults for `state: {type:
machinery}` and `{type: packml}` (shadow/config.py), so a machine that declares
those signals (and, for parts, `counters: {total: OperationCycleCounter}`) needs no
per-node config. {machine} is the machine object's browse name, which must be the
plant machine's id.

OPC 40001-1 Machinery puts machines in Objects/Machines (OPC 40501 machine tools too)
with MachineryItemState and MachineryOperationMode state machines, whose CurrentState
(LocalizedText) names the state, and OperationCounters (OPC 40001-1, 11.2) with
OperationCycleCounter. The building blocks sit in the machine's Monitoring object, its
MachineryBuildingBlocks folder, or directly in the machine; a server that exposes the
state or mode as a plain variable (its enumeration value) of that name is read too.
PackML (OPC 30050) PackMLObjectType has Status/StateCurrent and Status/UnitModeCurrent
(Int32, ISA-TR88 numbers); its counters are arrays of structures in Admin and are not
mapped. A machine's browse name matches its plant id exactly or ignoring case.
"""

from __future__ import annotations

_MACHINE = "Objects/Machines/{machine}/"
_BLOCKS = ("Monitoring/", "MachineryBuildingBlocks/", "")

COMPANION_PATHS: dict[str, tuple[tuple[str, str], ...]] = {
    "machinery": tuple(
        (f"{_MACHINE}{folder}{path}", signal)
        for folder in _BLOCKS
        for path, signal in (
            ("MachineryItemState/CurrentState", "MachineryItemState"),
            ("MachineryItemState", "MachineryItemState"),
            ("MachineryOperationMode/CurrentState", "MachineryOperationMode"),
            ("MachineryOperationMode", "MachineryOperationMode"),
            ("OperationCounters/OperationCycleCounter", "OperationCycleCounter"),
        )),
    "packml": (
        ("Objects/**/{machine}/Status/StateCurrent", "PackMLState"),
        ("Objects/**/{machine}/Status/UnitModeCurrent", "PackMLMode"),
    ),
}
