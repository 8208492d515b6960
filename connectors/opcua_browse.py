"""Walks an OPC UA address space for `ombre browse`: level by level from the Objects
folder, many nodes per Browse request, BrowseNext on continuation points, and the
variables' data types and access levels read in bulk.

At most `concurrency` requests are in flight; the semaphore is held only around one
request, never across a wait for other requests, so the walk cannot deadlock. The
walk stops at `max_nodes` (and says so) so a huge server cannot exhaust memory.
Namespace 0 below the Objects folder (the server's own Server object) is left out.
"""

from __future__ import annotations

import asyncio
import re
from collections.abc import Container, Iterator, Sequence
from dataclasses import dataclass, field

from asyncua import ua
from asyncua.client.client import Client
from asyncua.ua.attribute_ids import AttributeIds
from asyncua.ua.object_ids import ObjectIdNames, ObjectIds

from connectors.opcua_paths import PathPattern

NODES_PER_REQUEST = 100
MAX_REFERENCES_PER_NODE = 500  # the server pages beyond this with continuation points
NUMBER_TYPES = frozenset({"Boolean", "SByte", "Byte", "Int16", "UInt16", "Int32", "UInt32",
                          "Int64", "UInt64", "Float", "Double", "Duration", "Integer",
                          "UInteger", "Number"})
STRING_TYPES = frozenset({"String", "LocalizedText", "LocaleId", "NumericRange"})
_UNSAFE = re.compile(r"[/#+]+")


@dataclass(slots=True)
class BrowsedNode:
    """One Object or Variable; `path` is its browse names from the Objects folder."""

    node_id: ua.NodeId
    name: str  # the browse name's text, without its namespace index
    node_class: ua.NodeClass
    path: str  # e.g. Objects/Machines/Press1/Counters/Good
    data_type: str | None = None  # variables only
    access: str | None = None  # variables only: r, w, rw or -
    scalar: bool = True
    children: list[BrowsedNode] = field(default_factory=list)

    def walk(self) -> Iterator[tuple[int, BrowsedNode]]:
        """This node and its descendants, depth first, with their depth below it."""
        stack: list[tuple[int, BrowsedNode]] = [(0, self)]
        while stack:
            depth, node = stack.pop()
            yield depth, node
            stack.extend((depth + 1, c) for c in reversed(node.children))


@dataclass(slots=True)
class Tree:
    root: BrowsedNode
    truncated: bool  # max_nodes was reached


class Browser:
    """Browses one connected client; used from one task."""

    def __init__(self, client: Client, concurrency: int = 4, max_nodes: int = 200_000) -> None:
        self._client = client
        self._limit = asyncio.Semaphore(concurrency)
        self._max_nodes = max_nodes

    async def tree(self, depth: int) -> Tree:
        root = BrowsedNode(ua.NodeId(ua.Int32(ObjectIds.ObjectsFolder)), "Objects",
                           ua.NodeClass.Object, "Objects")
        seen, level, count = {root.node_id}, [root], 1
        for _ in range(depth):
            chunks = [level[i:i + NODES_PER_REQUEST] for i in range(0, len(level),
                                                                    NODES_PER_REQUEST)]
            found = await asyncio.gather(*(self._browse(chunk) for chunk in chunks))
            level = []
            for chunk, results in zip(chunks, found, strict=True):
                for parent, refs in zip(chunk, results, strict=True):
                    for ref in refs:
                        node_id = ua.NodeId(ref.NodeId.Identifier, ref.NodeId.NamespaceIndex,
                                            ref.NodeId.NodeIdType)
                        if node_id in seen or (node_id.NamespaceIndex == 0 and parent is root):
                            continue
                        if count >= self._max_nodes:
                            await self._describe(level)
                            return Tree(root, truncated=True)
                        seen.add(node_id)
                        count += 1
                        name = ref.BrowseName.Name or ""
                        child = BrowsedNode(node_id, name, ref.NodeClass, f"{parent.path}/{name}")
                        parent.children.append(child)
                        level.append(child)
            await self._describe(level)
            if not level:
                break
        return Tree(root, truncated=False)

    async def _browse(self, nodes: Sequence[BrowsedNode]) -> list[list[ua.ReferenceDescription]]:
        """The forward hierarchical references of each node, following continuation
        points until each list is complete."""
        params = ua.BrowseParameters()
        params.RequestedMaxReferencesPerNode = MAX_REFERENCES_PER_NODE
        for node in nodes:
            description = ua.BrowseDescription()
            description.NodeId = node.node_id
            description.BrowseDirection = ua.BrowseDirection.Forward
            description.ReferenceTypeId = ua.NodeId(ua.Int32(ObjectIds.HierarchicalReferences))
            description.IncludeSubtypes = True
            description.NodeClassMask = ua.NodeClass.Object | ua.NodeClass.Variable
            description.ResultMask = ua.BrowseResultMask.All
            params.NodesToBrowse.append(description)
        async with self._limit:
            results = await self._client.uaclient.browse(params)
        refs = [list(r.References or []) for r in results]
        pending = {i: r.ContinuationPoint for i, r in enumerate(results) if r.ContinuationPoint}
        while pending:
            next_params = ua.BrowseNextParameters(ReleaseContinuationPoints=False,
                                                  ContinuationPoints=list(pending.values()))
            async with self._limit:
                more = await self._client.uaclient.browse_next(next_params)
            indexes, pending = list(pending), {}
            for i, result in zip(indexes, more, strict=True):
                refs[i].extend(result.References or [])
                if result.ContinuationPoint:
                    pending[i] = result.ContinuationPoint
        return refs

    async def _describe(self, nodes: Sequence[BrowsedNode]) -> None:
        """Read the data type, value rank and access level of the variables."""
        variables = [n for n in nodes if n.node_class == ua.NodeClass.Variable]
        chunks = [variables[i:i + NODES_PER_REQUEST] for i in range(0, len(variables),
                                                                    NODES_PER_REQUEST)]
        await asyncio.gather(*(self._read(chunk) for chunk in chunks))

    async def _read(self, nodes: Sequence[BrowsedNode]) -> None:
        attributes = (AttributeIds.DataType, AttributeIds.ValueRank, AttributeIds.AccessLevel)
        params = ua.ReadParameters()
        for node in nodes:
            for attribute in attributes:
                params.NodesToRead.append(ua.ReadValueId(NodeId=node.node_id,
                                                         AttributeId=attribute))
        async with self._limit:
            values = await self._client.uaclient.read(params)
        for i, node in enumerate(nodes):
            data_type, rank, access = (v.Value.Value if v.Value is not None else None
                                       for v in values[3 * i:3 * i + 3])
            node.data_type = type_name(data_type) if isinstance(data_type, ua.NodeId) else None
            node.scalar = rank in (None, -1)
            node.access = access_text(access) if isinstance(access, int) else None


def type_name(data_type: ua.NodeId) -> str:
    """A standard type's name (Double), else the type's node id."""
    if data_type.NamespaceIndex == 0 and isinstance(data_type.Identifier, int):
        return ObjectIdNames.get(data_type.Identifier, data_type.to_string())
    return data_type.to_string()


def access_text(access: int) -> str:
    read = access & ua.AccessLevel.CurrentRead.mask
    write = access & ua.AccessLevel.CurrentWrite.mask
    return ("r" if read else "") + ("w" if write else "") or "-"


def matching(tree: BrowsedNode, pattern: PathPattern | None) -> set[int]:
    """The ids (`id()`) of nodes whose path matches `pattern`, and of their ancestors
    (so the tree shows where they are); every node when `pattern` is None."""
    nodes = list(tree.walk())
    if pattern is None:
        return {id(node) for _, node in nodes}
    keep: set[int] = set()
    parents: list[BrowsedNode] = []
    for depth, node in nodes:  # depth first: parents[:depth] are the node's ancestors
        del parents[depth:]
        if pattern.match(node.path) is not None:
            keep.update(id(p) for p in parents)
            keep.add(id(node))
        parents.append(node)
    return keep


def render(tree: BrowsedNode, pattern: PathPattern | None) -> Iterator[str]:
    """The tree as indented lines: name, node id, and for variables data type and access."""
    keep = matching(tree, pattern)
    for depth, node in tree.walk():
        if id(node) not in keep:
            continue
        line = f"{'  ' * depth}{node.name}  {node.node_id.to_string()}"
        if node.node_class == ua.NodeClass.Variable:
            rank = "" if node.scalar else "[]"
            line += f"  {node.data_type or '?'}{rank}  {node.access or '?'}"
        yield line


def signal_type(node: BrowsedNode) -> str | None:
    """The plant signal type a variable maps to, or None when it cannot be a signal."""
    if node.node_class != ua.NodeClass.Variable or not node.scalar:
        return None
    if node.data_type in NUMBER_TYPES:
        return "number"
    return "string" if node.data_type in STRING_TYPES else None


def name_of(text: str) -> str:
    """A browse name as a plant name: '/', '#' and '+' become '_', ends are trimmed."""
    return _UNSAFE.sub("_", text).strip() or "_"


def config_fragment(tree: BrowsedNode, pattern: PathPattern | None) -> dict[str, object]:
    """The matching scalar variables as a plant fragment: `machines` to paste under a
    line, and `nodes` to paste under the opcua source. A variable's machine is the
    pattern's {machine} level, else its parent's browse name; its signal is the
    {signal} level, else its browse name. Names are made unique with a suffix."""
    machines: dict[str, list[dict[str, str]]] = {}
    nodes: list[dict[str, str]] = []
    for _, parent in tree.walk():
        for node in parent.children:
            kind = signal_type(node)
            names = pattern.match(node.path) if pattern is not None else {}
            if kind is None or names is None:
                continue
            machine = name_of(names.get("machine", parent.name))
            signals = machines.setdefault(machine, [])
            signal = _unique(name_of(names.get("signal", node.name)),
                             {s["name"] for s in signals})
            signals.append({"name": signal} | ({"type": "string"} if kind == "string" else {}))
            nodes.append({"machine": machine, "signal": signal,
                          "node_id": node.node_id.to_string()})
    return {"machines": [{"id": m, "signals": s} for m, s in machines.items()],
            "nodes": nodes}


def _unique(name: str, taken: Container[str]) -> str:
    candidate, n = name, 1
    while candidate in taken:
        n += 1
        candidate = f"{name}_{n}"
    return candidate
