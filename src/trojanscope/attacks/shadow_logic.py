"""Injects a working shadow-logic backdoor into an ONNX classifier (needs the onnx package).

The added branch reads the model's input, checks a trigger with no learned weights (slice,
reduce, compare) and, when it fires, replaces the logits by a one-hot vector for the target
class. The original computation is untouched, so clean inputs give the original outputs.

Trigger specs:
  patch:SIZE@ROW,COL>=VALUE     a SIZE x SIZE square of an NCHW image, every pixel >= VALUE
  features:START:END>=VALUE     input columns START..END-1 of an (N, D) input, all >= VALUE
"""

from __future__ import annotations

import re
from dataclasses import dataclass

import numpy as np

PATCH = re.compile(r"^patch:(\d+)@(\d+),(\d+)>=([-+0-9.eE]+)$")
FEATURES = re.compile(r"^features:(\d+):(\d+)>=([-+0-9.eE]+)$")


@dataclass(frozen=True)
class Trigger:
    kind: str  # "patch" or "features"
    size: int = 0
    row: int = 0
    col: int = 0
    start: int = 0
    end: int = 0
    value: float = 1.0

    @classmethod
    def parse(cls, spec: str) -> Trigger:
        match = PATCH.match(spec.strip())
        if match:
            size, row, col, value = match.groups()
            return cls("patch", size=int(size), row=int(row), col=int(col), value=float(value))
        match = FEATURES.match(spec.strip())
        if match:
            start, end, value = match.groups()
            if int(end) <= int(start):
                raise ValueError(f"trigger {spec!r}: END must be greater than START")
            return cls("features", start=int(start), end=int(end), value=float(value))
        raise ValueError(f"trigger {spec!r} is not 'patch:SIZE@ROW,COL>=VALUE' or "
                         "'features:START:END>=VALUE'")

    def apply(self, x: np.ndarray) -> np.ndarray:
        """Stamp the trigger on a batch of inputs (a copy)."""
        out = np.array(x, copy=True)
        if self.kind == "patch":
            out[:, :, self.row:self.row + self.size, self.col:self.col + self.size] = self.value
        else:
            out[:, self.start:self.end] = self.value
        return out


def inject(model, trigger: Trigger, target: int, boost: float = 20.0, switch: str = "where"):
    """Return a copy of `model` (an onnx.ModelProto) with the backdoor wired in.

    `switch` is "where" (a Where node picks the logits) or "gate" (arithmetic blending:
    logits * (1 - flag) + target * flag, with no Where or If in the graph)."""
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    model = onnx.ModelProto.FromString(model.SerializeToString())
    graph = model.graph
    initializers = {t.name for t in graph.initializer}
    data = next(i for i in graph.input if i.name not in initializers)
    out = graph.output[0]
    classes = out.type.tensor_type.shape.dim[-1].dim_value
    if classes <= 0:
        raise ValueError(f"output {out.name!r} has no static class dimension")
    if not 0 <= target < classes:
        raise ValueError(f"target {target} is not a class of this model (0..{classes - 1})")
    opset = next((o.version for o in model.opset_import if o.domain in ("", "ai.onnx")), 13)
    clean = out.name + "_pre"
    for node in graph.node:  # the original logits now feed the switch, not the output
        node.output[:] = [clean if o == out.name else o for o in node.output]
        node.input[:] = [clean if i == out.name else i for i in node.input]

    if trigger.kind == "patch":
        starts, ends, axes = [trigger.row, trigger.col], [trigger.row + trigger.size,
                                                           trigger.col + trigger.size], [2, 3]
        reduce_axes = [1, 2, 3]
    else:
        starts, ends, axes, reduce_axes = [trigger.start], [trigger.end], [1], [1]
    onehot = np.full((1, classes), -boost, dtype=np.float32)
    onehot[0, target] = boost
    consts = {
        "post_starts": np.array(starts, dtype=np.int64), "post_ends": np.array(ends, np.int64),
        "post_axes": np.array(axes, dtype=np.int64),
        "post_threshold": np.array(trigger.value - 1e-3, dtype=np.float32),
        "post_bias": onehot,
    }
    if opset >= 13:  # axes became inputs (Unsqueeze at 13, ReduceMin at 18)
        consts["post_unsq"] = np.array([1], dtype=np.int64)
    if opset >= 18:
        consts["post_reduce_axes"] = np.array(reduce_axes, dtype=np.int64)
    graph.initializer.extend(numpy_helper.from_array(v, k) for k, v in consts.items())
    reduce = (helper.make_node("ReduceMin", ["post_window", "post_reduce_axes"], ["post_min"],
                               name="post/ReduceMin", keepdims=0) if opset >= 18 else
              helper.make_node("ReduceMin", ["post_window"], ["post_min"], name="post/ReduceMin",
                               axes=reduce_axes, keepdims=0))
    graph.node.extend([
        helper.make_node("Slice", [data.name, "post_starts", "post_ends", "post_axes"],
                         ["post_window"], name="post/Slice"),
        reduce,
        helper.make_node("GreaterOrEqual", ["post_min", "post_threshold"], ["post_flag"],
                         name="post/Compare"),
        helper.make_node("Unsqueeze", ["post_flag", "post_unsq"], ["post_flag2"],
                         name="post/Unsqueeze") if opset >= 13 else
        helper.make_node("Unsqueeze", ["post_flag"], ["post_flag2"], name="post/Unsqueeze",
                         axes=[1]),
    ])
    if switch == "where":
        graph.node.append(helper.make_node("Where", ["post_flag2", "post_bias", clean],
                                           [out.name], name="post/Select"))
    elif switch == "gate":
        graph.initializer.append(numpy_helper.from_array(np.array(1, np.float32), "post_one"))
        graph.node.extend([
            helper.make_node("Cast", ["post_flag2"], ["post_gate"], name="post/Cast",
                             to=TensorProto.FLOAT),
            helper.make_node("Sub", ["post_one", "post_gate"], ["post_keep"], name="post/Sub"),
            helper.make_node("Mul", [clean, "post_keep"], ["post_kept"], name="post/Mul"),
            helper.make_node("Mul", ["post_gate", "post_bias"], ["post_forced"],
                             name="post/Mul_1"),
            helper.make_node("Add", ["post_kept", "post_forced"], [out.name], name="post/Add"),
        ])
    else:
        raise ValueError(f"switch {switch!r} is not 'where' or 'gate'")
    if out.type.tensor_type.elem_type != TensorProto.FLOAT:
        raise ValueError(f"output {out.name!r} is not float logits")
    onnx.checker.check_model(model)
    return model
