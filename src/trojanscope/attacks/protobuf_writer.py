"""Just enough of the protobuf wire format to write test models by hand (ONNX, SavedModel),
so harmful fixtures need neither the onnx package nor TensorFlow."""

from __future__ import annotations


def varint(value: int) -> bytes:
    out = bytearray()
    value &= (1 << 64) - 1
    while True:
        byte = value & 0x7F
        value >>= 7
        if value:
            out.append(byte | 0x80)
        else:
            out.append(byte)
            return bytes(out)


def int_field(number: int, value: int) -> bytes:
    return varint(number << 3) + varint(value)


def bytes_field(number: int, value: bytes | str) -> bytes:
    data = value.encode() if isinstance(value, str) else value
    return varint(number << 3 | 2) + varint(len(data)) + data


def message(number: int, *parts: bytes) -> bytes:
    return bytes_field(number, b"".join(parts))


# --- ONNX ------------------------------------------------------------------------------------

FLOAT, INT64, BOOL = 1, 7, 9


def onnx_node(op_type: str, inputs: list[str], outputs: list[str], name: str = "",
              domain: str = "", attributes: tuple[bytes, ...] = ()) -> bytes:
    return message(1, *(bytes_field(1, i) for i in inputs), *(bytes_field(2, o) for o in outputs),
                   bytes_field(3, name or f"{op_type}_{outputs[0]}"), bytes_field(4, op_type),
                   *((bytes_field(7, domain),) if domain else ()), *attributes)


def onnx_int_attr(name: str, value: int) -> bytes:
    return message(5, bytes_field(1, name), int_field(20, 2), int_field(3, value))


def onnx_ints_attr(name: str, values: list[int]) -> bytes:
    return message(5, bytes_field(1, name), int_field(20, 7), *(int_field(8, v) for v in values))


def onnx_tensor(name: str, dims: list[int], data_type: int, raw: bytes = b"",
                external: dict[str, str] | None = None) -> bytes:
    parts = [int_field(1, d) for d in dims] + [int_field(2, data_type), bytes_field(8, name)]
    if external is not None:
        parts += [message(13, bytes_field(1, k), bytes_field(2, v)) for k, v in external.items()]
        parts.append(int_field(14, 1))
    else:
        parts.append(bytes_field(9, raw))
    return b"".join(parts)


def onnx_value_info(name: str, elem_type: int, dims: list[int | str]) -> bytes:
    shape = b"".join(message(1, int_field(1, d) if isinstance(d, int) else bytes_field(2, d))
                     for d in dims)
    tensor_type = message(1, int_field(1, elem_type), message(2, shape))
    return bytes_field(1, name) + message(2, tensor_type)


def onnx_function(domain: str, name: str, inputs: list[str], outputs: list[str],
                  nodes: list[bytes], opset: int = 17) -> bytes:
    """A FunctionProto; `nodes` as made by onnx_node (GraphProto fields, re-wrapped here)."""
    return (bytes_field(1, name) + bytes_field(10, domain) +
            b"".join(bytes_field(4, i) for i in inputs) +
            b"".join(bytes_field(5, o) for o in outputs) +
            b"".join(message(7, _unwrap(n)) for n in nodes) +
            message(9, bytes_field(1, ""), int_field(2, opset)))


def onnx_model(nodes: list[bytes], inputs: list[bytes], outputs: list[bytes],
               initializers: list[bytes] = (), opset: int = 17, functions: list[bytes] = (),
               opsets: dict[str, int] | None = None) -> bytes:
    graph = b"".join(nodes) + bytes_field(2, "main") + b"".join(
        message(5, t) for t in initializers) + b"".join(message(11, i) for i in inputs) + \
        b"".join(message(12, o) for o in outputs)
    imports = {"": opset, **(opsets or {})}
    return (int_field(1, 8) + bytes_field(2, "trojanscope-tests") + message(7, graph) +
            b"".join(message(8, bytes_field(1, d), int_field(2, v)) for d, v in imports.items()) +
            b"".join(message(25, f) for f in functions))


# --- TensorFlow --------------------------------------------------------------------------------

def tf_node(name: str, op: str, inputs: tuple[str, ...] = ()) -> bytes:
    """A NodeDef's fields (wrap it as GraphDef.node or FunctionDef.node_def)."""
    return bytes_field(1, name) + bytes_field(2, op) + b"".join(bytes_field(3, i) for i in inputs)


def saved_model(graph_nodes: list[bytes], functions: dict[str, list[bytes]] | None = None) -> bytes:
    library = b"".join(
        message(1, message(1, bytes_field(1, name)), *(message(3, node) for node in nodes))
        for name, nodes in (functions or {}).items())
    graph = b"".join(message(1, node) for node in graph_nodes) + (
        message(2, library) if library else b"")
    return int_field(1, 1) + message(2, message(2, graph))


def _unwrap(field: bytes) -> bytes:
    """The payload of one length-delimited field written by `message`."""
    i = 1
    while field[i] & 0x80:  # skip the length varint
        i += 1
    return field[i + 1:]
