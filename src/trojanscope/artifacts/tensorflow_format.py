"""TensorFlow SavedModel (saved_model.pb) and frozen GraphDef (.pb), read from the wire format
without TensorFlow: ops in the graph and its function library that read or write files, or run
Python. Also the Keras layer configs that a Keras SavedModel keeps in keras_metadata.pb."""

from __future__ import annotations

from ..findings import Location, Rule, Severity
from .keras_config import check_keras_config, configs_in_bytes
from .protobuf_wire import LEN, VARINT, ProtoError, fields, looks_like_message, read_varint, text
from .registry import FormatHandler, format_handler

UNSAFE_OPS = {
    "ReadFile": "reads a file", "WriteFile": "writes a file", "MatchingFiles": "lists files",
    "DeleteFile": "deletes a file", "PyFunc": "runs Python", "PyFuncStateless": "runs Python",
    "EagerPyFunc": "runs Python", "ImmutableConst": "maps a file into memory",
    "WholeFileReader": "reads files", "WholeFileReaderV2": "reads files",
    "TextLineReader": "reads files", "TextLineReaderV2": "reads files",
    "FixedLengthRecordReader": "reads files", "FixedLengthRecordReaderV2": "reads files",
    "TFRecordReader": "reads files", "TFRecordReaderV2": "reads files",
    "LMDBReader": "reads files", "TextLineDataset": "reads files",
    "TFRecordDataset": "reads files", "FixedLengthRecordDataset": "reads files",
    "Rpc": "calls the network", "TryRpc": "calls the network", "RpcCall": "calls the network",
    "PrintV2": "can write to a file", "DebugIdentityV2": "writes debug dumps to a path",
}
MAX_FINDINGS = 50

UNSAFE_OP = Rule("tensorflow.unsafe-op", Severity.HIGH,
                 "The TensorFlow graph uses an op that reads or writes files, reaches the network "
                 "or runs Python",
                 "Do not serve this model: inference would run the op with the server's rights.")
MALFORMED = Rule("tensorflow.malformed", Severity.HIGH, "The SavedModel protobuf cannot be decoded",
                 "Re-download the model; do not load it until it scans cleanly.")


@format_handler
class SavedModelHandler(FormatHandler):
    holds_model = True
    name = "tensorflow-savedmodel"
    priority = 60

    @classmethod
    def sniff(cls, head: bytes, complete: bool) -> bool:
        # schema version (field 1) then meta graphs (field 2); a keras_metadata.pb; or a frozen
        # GraphDef whose first node starts with its name and op.
        return (head[:2] == b"\x08\x01" and looks_like_message(head, {1: VARINT, 2: LEN})) or (
            head[:1] == b"\x0a" and (b'{"class_name"' in head or _graph_def(head)))

    @classmethod
    def scan(cls, ctx, source, location: Location, depth: int) -> None:
        buf = source.whole()
        seen: dict[str, list[str]] = {}
        if buf[:1] == b"\x0a" and _graph_def(bytes(buf[:4096])):
            try:
                _graph(buf, (0, len(buf)), seen)
            except ProtoError as exc:
                ctx.add(MALFORMED.finding(f"cannot decode: {exc}", location))
            _report(ctx, seen, location)
            return
        if buf[:1] == b"\x0a":
            for config in configs_in_bytes(bytes(buf)):
                for finding in check_keras_config(config, location, ctx.policy):
                    ctx.add(finding)
            return
        try:
            for number, wire, value in fields(buf):
                if number == 2 and wire == LEN:
                    _meta_graph(buf, value, seen)
        except ProtoError as exc:
            ctx.add(MALFORMED.finding(f"cannot decode: {exc}", location))
        _report(ctx, seen, location)


def _report(ctx, seen: dict, location: Location) -> None:
    for op, where in sorted(seen.items()):
            ctx.add(UNSAFE_OP.finding(
                f"{op} {UNSAFE_OPS[op]}: {len(where)} node(s), e.g. {', '.join(where[:3])}",
                location, {"op": op, "nodes": where[:MAX_FINDINGS]}))


def _graph_def(head: bytes) -> bool:
    """A GraphDef: field 1 holds a NodeDef that starts with its name (1) and op (2)."""
    view = memoryview(head)
    try:
        number, wire, span = next(fields(view))
    except (ProtoError, StopIteration) as exc:
        if not isinstance(exc, ProtoError) or "remain" not in str(exc):
            return False
        size, start = read_varint(view, 1, len(view))
        span = (start, min(len(view), start + size))
        number, wire = 1, LEN
    if number != 1 or wire != LEN:
        return False
    return looks_like_message(bytes(view[span[0]:span[1]]), {1: LEN, 2: LEN, 3: LEN, 4: LEN,
                                                              5: LEN}, min_fields=2)


def _meta_graph(buf, span, seen) -> None:
    for number, wire, value in fields(buf, *span):
        if number == 2 and wire == LEN:  # graph_def
            _graph(buf, value, seen)


def _graph(buf, span, seen) -> None:
    for n, w, v in fields(buf, *span):
        if n == 1 and w == LEN:
            _node(buf, v, "graph", seen)
        elif n == 2 and w == LEN:  # function library
            for fn, fw, fv in fields(buf, *v):
                if fn == 1 and fw == LEN:
                    _function(buf, fv, seen)


def _function(buf, span, seen) -> None:
    name = "function"
    for number, wire, value in fields(buf, *span):
        if number == 1 and wire == LEN:
            name = next((text(buf, v) for n, w, v in fields(buf, *value) if n == 1 and w == LEN),
                        name)
        elif number == 3 and wire == LEN:
            _node(buf, value, name, seen)


def _node(buf, span, scope: str, seen) -> None:
    name = op = ""
    for number, wire, value in fields(buf, *span):
        if number == 1 and wire == LEN:
            name = text(buf, value)
        elif number == 2 and wire == LEN:
            op = text(buf, value)
    if op in UNSAFE_OPS:
        seen.setdefault(op, []).append(f"{scope}/{name}")
