"""Makes Johnson et al.'s fixed-size ONNX style models run at any size that is a multiple of 4.

The published candy / mosaic / udnie ONNX files (microsoft/Windows-Machine-Learning,
`Samples/StyleTransfer/Assets/`) take `inputImage` and give `outputImage`, both float32
`[N, 3, 720, 720]`: the spatial size is fixed in the file, and onnxruntime rejects any other. Their
two ConvTranspose (upsampling) nodes carry a fixed `output_shape` (362 and 722). Making the two
spatial dims of the graph's input and output symbolic and replacing each `output_shape` with
`output_padding=[1, 1]` gives the same graph at any size that is a multiple of 4; at 720 the output
is bit-identical to the original.
"""

from __future__ import annotations

from mmr3_tasks.errors import MMR3Error


class OnnxPatchError(MMR3Error, ValueError):
    """The file is not the kind of fixed-size style-transfer graph this patch understands."""


def _symbolic_spatial_dims(value_info) -> None:
    """Rewrites dims 2 and 3 of an NCHW tensor's shape, in place, as `height` / `width` parameters."""
    if not value_info.type.HasField("tensor_type") or not value_info.type.tensor_type.HasField("shape"):
        return
    dims = value_info.type.tensor_type.shape.dim
    if len(dims) != 4:
        raise OnnxPatchError(f"tensor {value_info.name!r} has {len(dims)} dims, expected NCHW (4)")
    dims[2].Clear()
    dims[2].dim_param = "height"
    dims[3].Clear()
    dims[3].dim_param = "width"


def make_size_free(model: bytes) -> bytes:
    """Returns the model with symbolic spatial dims and output_padding instead of output_shape.

    Raises:
        OnnxPatchError: the file is not ONNX, has no graph, no ConvTranspose with `output_shape`, or
            a graph input/output that is not NCHW; it is not one of Johnson's fixed-size style models.
    """
    import onnx
    from google.protobuf.message import DecodeError

    try:
        proto = onnx.load_model_from_string(model)
    except DecodeError as err:
        raise OnnxPatchError(f"cannot parse the file as ONNX ({err}): is this really an ONNX file?") from err
    if not proto.HasField("graph"):
        raise OnnxPatchError("no graph in the ONNX file")
    graph = proto.graph
    # The first graph input is the image; the others (IR 3) are the initializers' declarations.
    if not graph.input or len(graph.output) != 1:
        raise OnnxPatchError("expected one image input and one output in the style model's graph")
    _symbolic_spatial_dims(graph.input[0])
    _symbolic_spatial_dims(graph.output[0])
    patched_deconvs = 0
    for node in graph.node:
        if node.op_type != "ConvTranspose":
            continue
        names = [a.name for a in node.attribute]
        if "output_padding" in names:
            raise OnnxPatchError("ConvTranspose already has output_padding: the model is patched already?")
        if "output_shape" not in names:
            continue
        kept = [a for a in node.attribute if a.name != "output_shape"]
        del node.attribute[:]
        node.attribute.extend([*kept, onnx.helper.make_attribute("output_padding", [1, 1])])
        patched_deconvs += 1
    if patched_deconvs == 0:
        raise OnnxPatchError("no ConvTranspose node with a fixed output_shape: not a fixed-size Johnson model")
    # Intermediate shapes recorded for the fixed size would contradict the new ones.
    del graph.value_info[:]
    return proto.SerializeToString()
