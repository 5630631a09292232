"""The weights of an ONNX file (e.g. an ultralytics export) under their PyTorch state_dict names.

PyTorch's exporters name the initializers after the parameters they hold (`model.0.conv.weight`); where an exporter
renamed one (`onnx::Conv_512` after constant folding), the name is recovered from the node that uses it: the
legacy exporter names nodes by module scopes (`/model.0/conv/Conv`), so a Conv's weight and bias become
`model.0.conv.weight` and `.bias`. Initializers that are no module's parameter (shape constants, folded anchors)
are left out. Exports fold BatchNorm into the convolutions: the result has conv biases and no `bn` keys, which the
zoo's builders and reference modules accept (zoo.engine.folding). Needs the `onnx` package (an optional extra);
reads no external data files and runs nothing. As in every format, NaN or Inf weights are refused, and so are
initializers with a repeated name, negative dims, or more declared values than ZOO_MAX_WEIGHT_BYTES allows.
"""
from __future__ import annotations

import re

import numpy as np

from .checkpoint_types import Checkpoint, CheckpointError, refuse_nonfinite

STATE_KEY = re.compile(r"^[A-Za-z_][\w]*(\.[\w]+)*\.(weight|bias|running_mean|running_var)$")
_PARAMETER_INPUTS = {"Conv": (None, "weight", "bias"), "ConvTranspose": (None, "weight", "bias"),
                     "Gemm": (None, "weight", "bias")}  # input 0 is the data


def read_onnx_model(path: str):
    """The ModelProto of an ONNX file, read without running anything and refused (CheckpointError, one line naming
    the file and the tensor) when any tensor anywhere in it, initializer or Constant, keeps its data in another
    file. Other readers of ONNX weights (zoo.ppocr's, whose weights are Constant nodes) go through this one."""
    try:
        import onnx
    except ImportError:
        raise CheckpointError(f"{path}: reading ONNX weights needs the 'onnx' package (pip install onnx)") from None
    from .onnx.contained import external_tensor
    try:
        model = onnx.load(path, load_external_data=False)
    except Exception as e:
        raise CheckpointError(f"{path}: not a readable ONNX file: {type(e).__name__}: "
                              f"{str(e).splitlines()[0] if str(e) else ''}") from None
    outside = external_tensor(model)
    if outside is not None:
        raise CheckpointError(f"{path}: tensor {outside!r}: its data is in an external file (or has external-data "
                              "entries), which is not read")
    return model


def load_onnx_weights(path: str):
    graph = read_onnx_model(path).graph
    arrays = _initializers(path, graph)
    names = _names_from_nodes(graph, arrays)
    tensors: dict[str, np.ndarray] = {}
    budget = _Budget(path)
    for name, proto in arrays.items():
        key = name if STATE_KEY.match(name) else names.get(name)
        if key is None or not _is_floating(proto):
            continue
        if key in tensors:
            raise CheckpointError(f"{path}: two initializers map to the state_dict key {key!r}")
        tensors[key] = _float32_array(path, proto, budget)
    if not tensors:
        raise CheckpointError(f"{path}: no initializer has (or maps to) a state_dict name such as "
                              "'model.0.conv.weight'")
    ordered = _in_graph_order(graph, tensors, names)
    return Checkpoint(ordered, None, f"ONNX initializers ({len(ordered)} of {len(arrays)})")


def _initializers(path: str, graph) -> dict:
    """name -> TensorProto, refusing what has no single meaning: a name given twice, data kept in other files."""
    from onnx import TensorProto

    arrays = {}
    for proto in graph.initializer:
        if proto.name in arrays:
            raise CheckpointError(f"{path}: two initializers are named {proto.name!r}; which one is meant is "
                                  "not defined")
        if proto.data_location == TensorProto.EXTERNAL or len(proto.external_data):
            raise CheckpointError(f"{path}: initializer {proto.name!r}: its data is in an external file (or has "
                                  "external-data entries), which is not read")
        arrays[proto.name] = proto
    return arrays


def _is_floating(proto) -> bool:
    from onnx import TensorProto
    return proto.data_type in (TensorProto.FLOAT, TensorProto.FLOAT16, TensorProto.DOUBLE, TensorProto.BFLOAT16)


class _Budget:
    """Declared sizes add up to at most wts.max_weight_bytes() of float32 ($ZOO_MAX_WEIGHT_BYTES), checked before
    anything is allocated for them."""

    def __init__(self, path: str):
        from wts.format import max_weight_bytes
        self.path, self.left = path, max_weight_bytes()

    def take(self, name: str, dims: list[int]) -> int:
        count = 1
        for d in dims:
            count *= d
        if count * 4 > self.left:
            raise CheckpointError(f"{self.path}: initializer {name!r}: dims {dims} declare {count} values, more "
                                  "than ZOO_MAX_WEIGHT_BYTES allows for the file")
        self.left -= count * 4
        return count


def _float32_array(path: str, proto, budget: _Budget) -> np.ndarray:
    """One initializer as float32, or one line naming the file and the tensor."""
    from onnx import numpy_helper

    dims = list(proto.dims)
    if any(d < 0 for d in dims):
        raise CheckpointError(f"{path}: initializer {proto.name!r}: negative dimension in dims {dims}")
    count = budget.take(proto.name, dims)
    try:
        array = numpy_helper.to_array(proto)
    except Exception as e:  # noqa: BLE001 - whatever the converter trips on, the tensor is malformed
        raise CheckpointError(f"{path}: initializer {proto.name!r}: its data does not match dims {dims} and its "
                              f"type ({type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''})") from None
    if array.size != count:
        raise CheckpointError(f"{path}: initializer {proto.name!r}: holds {array.size} values, dims {dims} "
                              f"declare {count}")
    return refuse_nonfinite(path, proto.name, np.ascontiguousarray(array, dtype=np.float32))


def _names_from_nodes(graph, arrays) -> dict[str, str]:
    """initializer name -> state_dict key, from the node (named by module path) that takes it as a parameter."""
    names = {}
    for node in graph.node:
        roles = _PARAMETER_INPUTS.get(node.op_type)
        if not roles or not node.name.startswith("/"):
            continue
        prefix = _module_path(node.name)
        if not prefix:
            continue
        for role, name in zip(roles, node.input):
            if role and name in arrays and not STATE_KEY.match(name):
                names[name] = f"{prefix}.{role}"
    return names


def _module_path(node_name: str) -> str:
    """'/model.23/cv3.2/cv3.2.0/cv3.2.0.0/conv/Conv' -> 'model.23.cv3.2.0.0.conv': the scopes without the op name,
    where a container's children repeat the container's path ('cv3.2', then 'cv3.2.0')."""
    parts: list[str] = []
    for scope in node_name.strip("/").split("/")[:-1]:
        if parts and scope.startswith(parts[-1] + "."):
            parts[-1] = scope
        else:
            parts.append(scope)
    return ".".join(parts)


def _in_graph_order(graph, tensors: dict[str, np.ndarray], names: dict[str, str]) -> dict[str, np.ndarray]:
    """The keys in the order the graph first uses them (the module order), then any others."""
    order = []
    for node in graph.node:
        for name in node.input:
            key = name if name in tensors else names.get(name)
            if key in tensors and key not in order:
                order.append(key)
    order += [k for k in tensors if k not in order]
    return {k: tensors[k] for k in order}
