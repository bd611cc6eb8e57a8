"""Finds "shadow logic" in an ONNX graph: a branch that reads a model input, decides with no
learned weights whether a trigger is present, and switches the model's output.

A switch is flagged when all three hold:
  (a) its condition depends on a graph input's values only through data-independent operations
      (slices, reductions, comparisons, casts, arithmetic with constants; no Conv, MatMul, Gemm,
      recurrent or normalisation layer, no embedding lookup);
  (b) that same input also feeds the model's learned computation, so it is the data the model
      classifies, not a separate mask input (attention and padding masks come in that way);
  (c) the switch's output reaches a graph output with no learned operation after it, so the
      switch decides the final answer (masking inside a network is followed by more layers).
Switches are Where and If on the condition, and Mul/And gating by a compared value.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from .limits import LimitExceeded
from .onnx_graph import Function, Graph, Node

LEARNED_OPS = {
    "Conv", "ConvTranspose", "ConvInteger", "MatMul", "MatMulInteger", "Gemm", "QLinearConv",
    "QLinearMatMul", "LSTM", "GRU", "RNN", "BatchNormalization", "InstanceNormalization",
    "LayerNormalization", "GroupNormalization", "RMSNormalization", "SkipLayerNormalization",
    "SimplifiedLayerNormalization", "Attention", "MultiHeadAttention", "EmbedLayerNormalization",
    "FusedMatMul", "FusedConv", "FusedGemm", "DynamicQuantizeMatMul", "MatMulNBits",
    "QAttention", "DeformConv",
}
VALUE_FREE_OPS = {"Shape", "Size"}  # read only the shape of their input, not its values
COMPARE_OPS = {"Equal", "Greater", "GreaterOrEqual", "Less", "LessOrEqual", "And", "Or", "Not",
               "Xor", "IsNaN", "IsInf"}
GATES = {"Mul", "And"}
MAX_INLINED_NODES = 200_000  # real exports inline to tens of thousands
MAX_INLINED_NODES = 200_000  # real exports inline to tens of thousands
MAX_INLINE_DEPTH = 8
MAX_TRIGGER_NODES = 16


@dataclass(frozen=True)
class State:
    deps: frozenset = frozenset()  # graph inputs whose values reach here without learned weights
    learned: bool = False          # some learned operation lies on a path to here
    compared: bool = False         # some comparison lies on the data-independent path


CONSTANT = State()


@dataclass
class Switch:
    node: Node
    condition: str
    inputs: list[str]
    trigger_nodes: list[str]
    graph_path: list[str] = field(default_factory=list)


def find_shadow_logic(graph: Graph, functions: dict[tuple[str, str], Function]) -> list[Switch]:
    nodes = inline_functions(graph.nodes, functions, 0)
    feeds_learned = _feeds_learned(nodes, graph.initializers)
    states = {name: State(frozenset({name})) for name in graph.inputs
              if name not in graph.initializers}
    return _analyse(graph, nodes, states, feeds_learned, set(graph.outputs), [graph.name or "main"])


def _analyse(graph: Graph, nodes: list[Node], outer: dict, feeds_learned: set,
             final: set, path: list[str]) -> list[Switch]:
    states = _forward(graph, nodes, outer)
    clean = _clean_to_output(nodes, final)
    switches: list[Switch] = []
    for index, node in enumerate(nodes):
        if not any(o in clean for o in node.outputs):
            continue
        where = path + [node.name or f"{node.op_type}#{index}"]
        for condition in _conditions(node, states):
            state = states.get(condition, CONSTANT)
            sources = sorted(state.deps & feeds_learned)
            if state.deps and not state.learned and sources:
                switches.append(Switch(node, condition, sources,
                                       _trigger_nodes(nodes, condition, states), where))
                break
        for attr, sub in node.subgraphs:  # a body's outputs are final when the node's are
            switches += _analyse(sub, sub.nodes, states, feeds_learned, set(sub.outputs),
                                 where + [attr])
    return switches


def _forward(graph: Graph, nodes: list[Node], outer: dict) -> dict:
    states = dict(outer)
    for name in graph.initializers:
        states[name] = CONSTANT
    for node in nodes:
        ins = [states.get(name, CONSTANT) for name in node.inputs if name]
        out = _step(node, ins, graph.initializers)
        for attr_graph in (g for _, g in node.subgraphs):
            inner = _forward(attr_graph, attr_graph.nodes, states)
            out = _merge([out] + [inner.get(o, CONSTANT) for o in attr_graph.outputs], "")
        for name in node.outputs:
            states[name] = out
    return states


def _step(node: Node, ins: list[State], initializers: set) -> State:
    if _is_learned(node, initializers):
        return State(frozenset(), True, False)
    if node.op_type in VALUE_FREE_OPS:
        return CONSTANT
    return _merge(ins, node.op_type)


def _merge(ins: list[State], op_type: str) -> State:
    deps = frozenset().union(*(s.deps for s in ins)) if ins else frozenset()
    return State(deps, any(s.learned for s in ins),
                 any(s.compared for s in ins) or op_type in COMPARE_OPS)


def _is_learned(node: Node, initializers: set) -> bool:
    if node.op_type in LEARNED_OPS:
        return True
    # An embedding is a Gather from a learned table; Einsum with a weight is a matrix product.
    if node.op_type == "Gather" and node.inputs and node.inputs[0] in initializers:
        return True
    return node.op_type == "Einsum" and any(i in initializers for i in node.inputs)


def _conditions(node: Node, states: dict) -> list[str]:
    if node.op_type in ("Where", "If") and node.inputs:
        return [node.inputs[0]]
    if node.op_type in GATES:
        return [i for i in node.inputs if states.get(i, CONSTANT).compared]
    return []


def _feeds_learned(nodes: list[Node], initializers: set) -> set[str]:
    """Tensors from which some learned operation can be reached."""
    reach: set[str] = set()
    for node in reversed(nodes):
        if _is_learned(node, initializers) or any(o in reach for o in node.outputs):
            reach.update(i for i in node.inputs if i)
        learned_bodies = [g for _, g in node.subgraphs if _contains_learned(g, initializers)]
        if learned_bodies:
            # What a body reads from outside feeds its layers. An If's condition does not: it
            # only chooses a branch (silero-vad picks its layers by the sample-rate input).
            reach.update(name for g in learned_bodies for name in _outer_reads(g))
            if node.op_type != "If":
                reach.update(i for i in node.inputs if i)
    return reach


def _outer_reads(graph: Graph) -> set[str]:
    """Tensors a subgraph (and the subgraphs in it) reads from the scope around it."""
    made = set(graph.inputs) | set(graph.initializers)
    read: set[str] = set()
    for node in graph.nodes:
        read.update(i for i in node.inputs if i and i not in made)
        for _, sub in node.subgraphs:
            read.update(name for name in _outer_reads(sub) if name not in made)
        made.update(node.outputs)
    return read


def _contains_learned(graph: Graph, initializers: set) -> bool:
    known = initializers | graph.initializers
    return any(_is_learned(n, known) or any(_contains_learned(g, known) for _, g in n.subgraphs)
               for n in graph.nodes)


def _clean_to_output(nodes: list[Node], final: set) -> set[str]:
    """Tensors that reach a final output with no learned operation on the way."""
    clean = set(final)
    for node in reversed(nodes):
        if node.op_type not in LEARNED_OPS and any(o in clean for o in node.outputs):
            clean.update(i for i in node.inputs if i)
    return clean


def _trigger_nodes(nodes: list[Node], condition: str, states: dict) -> list[str]:
    """The data-independent nodes that compute the condition, nearest first."""
    wanted, found = {condition}, []
    for index in range(len(nodes) - 1, -1, -1):
        node = nodes[index]
        if any(o in wanted for o in node.outputs):
            found.append(node.name or f"{node.op_type}#{index}")
            wanted.update(i for i in node.inputs if i and states.get(i, CONSTANT).deps)
            if len(found) >= MAX_TRIGGER_NODES:
                break
    return found


def inline_functions(nodes: list[Node], functions: dict, depth: int,
                     budget: list[int] | None = None) -> list[Node]:
    """Replace calls of model-local functions by their bodies, with tensors renamed apart. At
    most MAX_INLINED_NODES nodes in all: functions calling functions multiply (a 2 KB file can
    ask for billions), which is a LimitExceeded."""
    if not functions or depth > MAX_INLINE_DEPTH:
        return nodes
    budget = [MAX_INLINED_NODES] if budget is None else budget
    out: list[Node] = []
    for index, node in enumerate(nodes):
        budget[0] -= 1
        if budget[0] < 0:
            raise LimitExceeded("ONNX nodes after inlining local functions", MAX_INLINED_NODES)
        function = functions.get((node.domain, node.op_type))
        if function is None:
            out.append(node)
            continue
        prefix = f"{node.name or node.op_type}#{index}/"
        rename = dict(zip(function.inputs, node.inputs))
        rename.update(zip(function.outputs, node.outputs))
        body = [Node(f"{prefix}{n.name}", n.op_type, n.domain,
                     [rename.get(i, prefix + i if i else i) for i in n.inputs],
                     [rename.get(o, prefix + o) for o in n.outputs], n.subgraphs)
                for n in function.nodes]
        out.extend(inline_functions(body, functions, depth + 1, budget))
    return out
