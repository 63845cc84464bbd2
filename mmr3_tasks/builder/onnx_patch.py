"""Makes Johnson et al.'s fixed-size ONNX style models run at any size that is a multiple of 4.

The published candy / mosaic / udnie ONNX files fix their input and output at 720x720, and their
two ConvTranspose nodes carry `output_shape` = 362 and 722 (../shared/style-models/README.md).
Making the two spatial dims of the graph's input and output symbolic and replacing each
`output_shape` with `output_padding=[1, 1]` gives the same graph at any size; at 720 the output
is bit-identical to the original.

The edit works on the protobuf wire format directly (field numbers from onnx/onnx.proto), so the
builder needs `onnxruntime` only, not the `onnx` package.
"""

from __future__ import annotations

from dataclasses import dataclass

from mmr3_tasks.errors import MMR3Error

# Field numbers in onnx.proto.
_MODEL_GRAPH = 7
_GRAPH_NODE, _GRAPH_INPUT, _GRAPH_OUTPUT, _GRAPH_VALUE_INFO = 1, 11, 12, 13
_NODE_OP_TYPE, _NODE_ATTRIBUTE = 4, 5
_ATTR_NAME, _ATTR_INTS, _ATTR_TYPE = 1, 8, 20
_ATTR_TYPE_INTS = 7
_VALUE_INFO_NAME, _VALUE_INFO_TYPE = 1, 2
_TYPE_TENSOR = 1
_TENSOR_SHAPE = 2
_SHAPE_DIM = 1
_DIM_PARAM = 2

_VARINT, _I64, _LEN, _I32 = 0, 1, 2, 5


class OnnxPatchError(MMR3Error, ValueError):
    """The file is not the kind of fixed-size style-transfer graph this patch understands."""


@dataclass
class _Field:
    number: int
    wire: int
    value: int | bytes


def _read_varint(buf: bytes, i: int) -> tuple[int, int]:
    shift = result = 0
    while True:
        if i >= len(buf):
            raise OnnxPatchError("truncated protobuf varint: is this really an ONNX file?")
        byte = buf[i]
        i += 1
        result |= (byte & 0x7F) << shift
        if not byte & 0x80:
            return result, i
        shift += 7


def _varint(value: int) -> bytes:
    if value < 0:
        value += 1 << 64  # protobuf int64: two's complement on 10 bytes
    out = bytearray()
    while True:
        low = value & 0x7F
        value >>= 7
        if value:
            out.append(low | 0x80)
        else:
            out.append(low)
            return bytes(out)


def _parse(buf: bytes) -> list[_Field]:
    fields = []
    i = 0
    while i < len(buf):
        key, i = _read_varint(buf, i)
        number, wire = key >> 3, key & 7
        if wire == _VARINT:
            value, i = _read_varint(buf, i)
        elif wire == _I64:
            value, i = buf[i : i + 8], i + 8
        elif wire == _LEN:
            size, i = _read_varint(buf, i)
            value, i = buf[i : i + size], i + size
        elif wire == _I32:
            value, i = buf[i : i + 4], i + 4
        else:
            raise OnnxPatchError(f"unsupported protobuf wire type {wire}: is this really an ONNX file?")
        if i > len(buf):
            raise OnnxPatchError("truncated protobuf message: is this really an ONNX file?")
        fields.append(_Field(number, wire, value))
    return fields


def _serialize(fields: list[_Field]) -> bytes:
    out = bytearray()
    for f in fields:
        out += _varint(f.number << 3 | f.wire)
        if f.wire == _VARINT:
            out += _varint(int(f.value))
        elif f.wire == _LEN:
            out += _varint(len(f.value)) + bytes(f.value)
        else:
            out += bytes(f.value)
    return bytes(out)


def _string(fields: list[_Field], number: int) -> str:
    for f in fields:
        if f.number == number and f.wire == _LEN:
            return bytes(f.value).decode("utf-8")
    return ""


def _ints_attribute(name: str, values: list[int]) -> bytes:
    fields = [_Field(_ATTR_NAME, _LEN, name.encode())]
    fields += [_Field(_ATTR_INTS, _VARINT, v) for v in values]
    fields.append(_Field(_ATTR_TYPE, _VARINT, _ATTR_TYPE_INTS))
    return _serialize(fields)


def _symbolic_spatial_dims(value_info: bytes) -> bytes:
    """Rewrites dims 2 and 3 of an NCHW tensor's shape as `height` / `width` parameters."""
    vi = _parse(value_info)
    name = _string(vi, _VALUE_INFO_NAME)
    for f in vi:
        if f.number != _VALUE_INFO_TYPE:
            continue
        tp = _parse(f.value)
        for t in tp:
            if t.number != _TYPE_TENSOR:
                continue
            tensor = _parse(t.value)
            for s in tensor:
                if s.number != _TENSOR_SHAPE:
                    continue
                shape = _parse(s.value)
                dims = [d for d in shape if d.number == _SHAPE_DIM]
                if len(dims) != 4:
                    raise OnnxPatchError(f"tensor {name!r} has {len(dims)} dims, expected NCHW (4)")
                dims[2].value = _serialize([_Field(_DIM_PARAM, _LEN, b"height")])
                dims[3].value = _serialize([_Field(_DIM_PARAM, _LEN, b"width")])
                s.value = _serialize(shape)
            t.value = _serialize(tensor)
        f.value = _serialize(tp)
    return _serialize(vi)


def make_size_free(model: bytes) -> bytes:
    """Returns the model with symbolic spatial dims and output_padding instead of output_shape.

    Raises:
        OnnxPatchError: the file has no graph, no ConvTranspose with `output_shape`, or a graph
            input/output that is not NCHW; it is not one of Johnson's fixed-size style models.
    """
    top = _parse(model)
    graphs = [f for f in top if f.number == _MODEL_GRAPH]
    if len(graphs) != 1:
        raise OnnxPatchError("no graph in the ONNX file")
    graph = _parse(graphs[0].value)
    patched_deconvs = 0
    inputs = [f for f in graph if f.number == _GRAPH_INPUT]
    outputs = [f for f in graph if f.number == _GRAPH_OUTPUT]
    # The first graph input is the image; the others (IR 3) are the initializers' declarations.
    if not inputs or len(outputs) != 1:
        raise OnnxPatchError("expected one image input and one output in the style model's graph")
    inputs[0].value = _symbolic_spatial_dims(inputs[0].value)
    outputs[0].value = _symbolic_spatial_dims(outputs[0].value)
    for f in graph:
        if f.number != _GRAPH_NODE:
            continue
        node = _parse(f.value)
        if _string(node, _NODE_OP_TYPE) != "ConvTranspose":
            continue
        attrs = [a for a in node if a.number == _NODE_ATTRIBUTE]
        kept = [a for a in node if a.number != _NODE_ATTRIBUTE]
        found = False
        for a in attrs:
            name = _string(_parse(a.value), _ATTR_NAME)
            if name == "output_shape":
                found = True
                continue
            if name == "output_padding":
                raise OnnxPatchError("ConvTranspose already has output_padding: the model is patched already?")
            kept.append(a)
        if found:
            kept.append(_Field(_NODE_ATTRIBUTE, _LEN, _ints_attribute("output_padding", [1, 1])))
            patched_deconvs += 1
        f.value = _serialize(kept)
    if patched_deconvs == 0:
        raise OnnxPatchError("no ConvTranspose node with a fixed output_shape: not a fixed-size Johnson model")
    # Intermediate shapes recorded for the fixed size would contradict the new ones.
    graph = [f for f in graph if f.number != _GRAPH_VALUE_INFO]
    graphs[0].value = _serialize(graph)
    return _serialize(top)
