"""Decodes the parts of an ONNX ModelProto that scan needs, straight from the wire format:
nodes (with If/Loop/Scan bodies), graph inputs, outputs, initializer names, external data
references and local functions. Tensor bytes are never copied."""

from __future__ import annotations

from dataclasses import dataclass, field

from .protobuf_wire import LEN, ProtoError, fields, text

MAX_GRAPH_DEPTH = 32  # subgraphs inside subgraphs


@dataclass
class Node:
    name: str
    op_type: str
    domain: str
    inputs: list[str]
    outputs: list[str]
    subgraphs: list[tuple[str, Graph]] = field(default_factory=list)


@dataclass
class ExternalData:
    tensor: str
    location: str
    entries: dict[str, str]


@dataclass
class Graph:
    name: str = ""
    nodes: list[Node] = field(default_factory=list)
    inputs: list[str] = field(default_factory=list)
    outputs: list[str] = field(default_factory=list)
    initializers: set[str] = field(default_factory=set)
    external: list[ExternalData] = field(default_factory=list)


@dataclass
class Function:
    domain: str
    name: str
    inputs: list[str]
    outputs: list[str]
    nodes: list[Node]


@dataclass
class Model:
    ir_version: int = 0
    opsets: dict[str, int] = field(default_factory=dict)
    producer: str = ""
    graph: Graph = field(default_factory=Graph)
    functions: dict[tuple[str, str], Function] = field(default_factory=dict)


def parse_model(buf: memoryview) -> Model:
    model = Model()
    for number, wire, value in fields(buf):
        if number == 1 and wire != LEN:
            model.ir_version = value
        elif number == 8 and wire == LEN:
            domain, version = "", 0
            for n, w, v in fields(buf, *value):
                if n == 1 and w == LEN:
                    domain = text(buf, v)
                elif n == 2 and w != LEN:
                    version = v
            model.opsets[domain] = version
        elif number == 2 and wire == LEN:
            model.producer = text(buf, value)
        elif number == 7 and wire == LEN:
            model.graph = _graph(buf, value, 0)
        elif number == 25 and wire == LEN:
            function = _function(buf, value)
            model.functions[(function.domain, function.name)] = function
    return model


def _graph(buf: memoryview, span: tuple[int, int], depth: int) -> Graph:
    if depth > MAX_GRAPH_DEPTH:
        raise ProtoError(f"subgraphs nested deeper than {MAX_GRAPH_DEPTH}")
    graph = Graph()
    for number, wire, value in fields(buf, *span):
        if wire != LEN:
            continue
        if number == 1:
            graph.nodes.append(_node(buf, value, depth, graph))
        elif number == 2:
            graph.name = text(buf, value)
        elif number == 5:
            name, external = _tensor(buf, value)
            graph.initializers.add(name)
            if external:
                graph.external.append(external)
        elif number in (11, 12):
            name = next((text(buf, v) for n, w, v in fields(buf, *value) if n == 1 and w == LEN),
                        "")
            (graph.inputs if number == 11 else graph.outputs).append(name)
    return graph


def _node(buf: memoryview, span: tuple[int, int], depth: int, owner: Graph) -> Node:
    node = Node("", "", "", [], [])
    for number, wire, value in fields(buf, *span):
        if wire != LEN:
            continue
        if number == 1:
            node.inputs.append(text(buf, value))
        elif number == 2:
            node.outputs.append(text(buf, value))
        elif number == 3:
            node.name = text(buf, value)
        elif number == 4:
            node.op_type = text(buf, value)
        elif number == 7:
            node.domain = text(buf, value)
        elif number == 5:
            _attribute(buf, value, depth, node, owner)
    return node


def _attribute(buf: memoryview, span, depth: int, node: Node, owner: Graph) -> None:
    name = ""
    for number, wire, value in fields(buf, *span):
        if wire != LEN:
            continue
        if number == 1:
            name = text(buf, value)
        elif number in (6, 11):  # g, graphs
            node.subgraphs.append((name, _graph(buf, value, depth + 1)))
        elif number in (5, 10):  # t, tensors: a Constant's value may live outside the file too
            _, external = _tensor(buf, value)
            if external:
                owner.external.append(external)


def _tensor(buf: memoryview, span) -> tuple[str, ExternalData | None]:
    name, entries, external = "", {}, False
    for number, wire, value in fields(buf, *span):
        if number == 8 and wire == LEN:
            name = text(buf, value)
        elif number == 13 and wire == LEN:
            key = val = ""
            for n, w, v in fields(buf, *value):
                if n == 1 and w == LEN:
                    key = text(buf, v)
                elif n == 2 and w == LEN:
                    val = text(buf, v)
            entries[key] = val
        elif number == 14 and wire != LEN:
            external = value == 1
    if external or "location" in entries:
        return name, ExternalData(name, entries.get("location", ""), entries)
    return name, None


def _function(buf: memoryview, span) -> Function:
    function = Function("", "", [], [], [])
    holder = Graph()
    for number, wire, value in fields(buf, *span):
        if wire != LEN:
            continue
        if number == 1:
            function.name = text(buf, value)
        elif number == 10:
            function.domain = text(buf, value)
        elif number == 4:
            function.inputs.append(text(buf, value))
        elif number == 5:
            function.outputs.append(text(buf, value))
        elif number == 7:
            function.nodes.append(_node(buf, value, 1, holder))
    return function
