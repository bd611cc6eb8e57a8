"""ONNX models: custom operator domains, external data that points outside the model folder,
and shadow logic (a trigger-detecting branch that overrides the output). Read from the wire
format; the onnx package is not needed to scan."""

from __future__ import annotations

import posixpath
import re
from typing import TYPE_CHECKING

from ..findings import Location, Rule, Severity
from .protobuf_wire import LEN, VARINT, ProtoError, looks_like_message
from .registry import FormatHandler, format_handler

if TYPE_CHECKING:
    from .onnx_graph import Graph, Model

SHADOW_LOGIC = Rule("onnx.shadow-logic", Severity.HIGH,
                    "A branch decides from the raw input, with no learned weights, whether to "
                    "override the model's output (shadow logic)",
                    "Do not deploy this model: inspect the named nodes; a clean export has no "
                    "input-driven switch after its last learned layer.")
EXTERNAL_ESCAPE = Rule("onnx.external-data-escape", Severity.CRITICAL,
                       "A tensor's external data location is absolute or leaves the model folder",
                       "Do not load this model: the loader would read any file the path names "
                       "into a tensor.")
CUSTOM_OP = Rule("onnx.custom-op", Severity.MEDIUM,
                 "The model uses operators from a custom domain",
                 "Running it needs a custom-op library, which is native code: get that library "
                 "from a source you trust, or refuse the model.")
MALFORMED = Rule("onnx.malformed", Severity.HIGH, "The ONNX protobuf cannot be decoded",
                 "Re-download the file; do not load it until it scans cleanly.")

STANDARD_DOMAINS = {"", "ai.onnx", "ai.onnx.ml", "ai.onnx.training", "ai.onnx.preview.training",
                    "com.microsoft", "com.microsoft.nchwc", "com.microsoft.experimental",
                    "ai.onnx.contrib", "pkg.onnxscript.torch_lib.common"}
MODEL_FIELDS = {1: VARINT, 2: LEN, 3: LEN, 4: LEN, 5: VARINT, 6: LEN, 7: LEN, 8: LEN, 14: LEN,
                20: LEN, 25: LEN, 26: LEN}
WINDOWS_DRIVE = re.compile(r"^[A-Za-z]:")


@format_handler
class OnnxHandler(FormatHandler):
    holds_model = True
    name = "onnx"
    priority = 60

    @classmethod
    def sniff(cls, head: bytes, complete: bool) -> bool:
        # ModelProto starts with ir_version (field 1, 3..15) in every exporter's output.
        return len(head) > 4 and head[0] == 0x08 and 3 <= head[1] <= 15 and \
            looks_like_message(head, MODEL_FIELDS, min_fields=3)

    @classmethod
    def scan(cls, ctx, source, location: Location, depth: int) -> None:
        from .onnx_graph import parse_model  # imported when an ONNX file is met: start-up

        try:
            model = parse_model(source.whole())
        except ProtoError as exc:
            ctx.add(MALFORMED.finding(f"cannot decode the model: {exc}", location))
            return
        check_model(ctx, model, location)


def check_model(ctx, model: Model, location: Location) -> None:
    from .shadow_logic import find_shadow_logic

    local = set(model.functions)
    for graph, where in _graphs(model.graph, (model.graph.name or "main",)):
        for node in graph.nodes:
            if node.domain not in STANDARD_DOMAINS and (node.domain, node.op_type) not in local:
                ctx.add(CUSTOM_OP.finding(
                    f"node {node.name or node.op_type!r} runs {node.op_type} from domain "
                    f"{node.domain!r}", location,
                    {"domain": node.domain, "op_type": node.op_type, "graph": list(where)}))
        for ext in graph.external:
            problem = _escapes(ext.location)
            if problem:
                ctx.add(EXTERNAL_ESCAPE.finding(
                    f"tensor {ext.tensor!r} reads its data from {ext.location!r}: {problem}",
                    location, {"tensor": ext.tensor, "location": ext.location}))
    for switch in find_shadow_logic(model.graph, model.functions):
        node = switch.node
        ctx.add(SHADOW_LOGIC.finding(
            f"{node.op_type} node {node.name or '(unnamed)'!r} switches the output on "
            f"{switch.condition!r}, computed from input {', '.join(switch.inputs)} by "
            f"{len(switch.trigger_nodes)} weight-free node(s): "
            f"{', '.join(switch.trigger_nodes[:6])}",
            location,
            {"switch": node.name, "op_type": node.op_type, "condition": switch.condition,
             "inputs": switch.inputs, "trigger_nodes": switch.trigger_nodes,
             "graph_path": switch.graph_path}))


def _graphs(graph: Graph, where: tuple):
    yield graph, where
    for node in graph.nodes:
        for attr, sub in node.subgraphs:
            yield from _graphs(sub, where + (node.name or node.op_type, attr))


def _escapes(location: str) -> str:
    if not location:
        return "an empty location"
    if location.startswith(("/", "\\")) or WINDOWS_DRIVE.match(location):
        return "an absolute path"
    if location.startswith("~"):
        return "a path in a home folder"
    normal = posixpath.normpath(location.replace("\\", "/"))
    if normal == ".." or normal.startswith("../"):
        return "a path outside the model's folder"
    return ""
