"""Every tensor of an ONNX model inside the model's own bytes, whatever field holds it.

ONNX Runtime opens an external-data file (a path relative to the working directory for a model given as bytes) for
any TensorProto that says its data is elsewhere, and TensorProtos hide in many fields: graph initializers, Constant
and other attributes (`t`, `tensors`), sparse tensors (`sparse_value`, `sparse_tensors`, a graph's
`sparse_initializer`, whose `values` and `indices` are TensorProtos), subgraphs, functions, training info.
Rather than list the fields (and miss the next one a new opset adds), the whole message tree is walked through
protobuf's descriptors and every TensorProto in it is checked.
"""
from __future__ import annotations

TENSOR_PROTO = "onnx.TensorProto"


def tensors_in(message):
    """Every TensorProto anywhere under `message` (depth-first, without recursion: nesting is the file's choice)."""
    stack = [message]
    while stack:
        current = stack.pop()
        if current.DESCRIPTOR.full_name == TENSOR_PROTO:
            yield current
        for field, value in current.ListFields():
            if field.message_type is None:
                continue
            if field.is_repeated:
                if field.message_type.GetOptions().map_entry:
                    stack.extend(v for v in value.values() if hasattr(v, "DESCRIPTOR"))
                else:
                    stack.extend(value)
            else:
                stack.append(value)


def external_tensor(model) -> str | None:
    """The name of the first tensor whose data would be read from another file, or None when all are inside."""
    import onnx
    for tensor in tensors_in(model):
        if tensor.data_location == onnx.TensorProto.EXTERNAL or len(tensor.external_data):
            return tensor.name or "(unnamed)"
    return None
