"""The weights of an ONNX file (e.g. an ultralytics export) under their PyTorch state_dict names.

PyTorch's exporters name the initializers after the parameters they hold (`model.0.conv.weight`); where an exporter
renamed one (`onnx::Conv_512` after constant folding), the name is recovered from the node that uses it: the
legacy exporter names nodes by module scopes (`/model.0/conv/Conv`), so a Conv's weight and bias become
`model.0.conv.weight` and `.bias`. Initializers that are no module's parameter (shape constants, folded anchors)
are left out. Exports fold BatchNorm into the convolutions: the result has conv biases and no `bn` keys, which the
zoo's builders and reference modules accept (zoo.engine.folding). Needs the `onnx` package (an optional extra);
reads no external data files and runs nothing.
"""
from __future__ import annotations

import re

import numpy as np

from .checkpoint_types import Checkpoint, CheckpointError

STATE_KEY = re.compile(r"^[A-Za-z_][\w]*(\.[\w]+)*\.(weight|bias|running_mean|running_var)$")
_PARAMETER_INPUTS = {"Conv": (None, "weight", "bias"), "ConvTranspose": (None, "weight", "bias"),
                     "Gemm": (None, "weight", "bias")}  # input 0 is the data


def read_onnx_model(path: str):
    """The ModelProto of an ONNX file, read without external data files (a file that needs them is refused) and
    without running anything; CheckpointError (one line naming the file) otherwise. Other readers of ONNX weights
    (e.g. zoo.ppocr's, whose weights are Constant nodes) go through this one."""
    try:
        import onnx
    except ImportError:
        raise CheckpointError(f"{path}: reading ONNX weights needs the 'onnx' package (pip install onnx)") from None
    try:
        model = onnx.load(path, load_external_data=False)
    except Exception as e:
        raise CheckpointError(f"{path}: not a readable ONNX file: {type(e).__name__}: "
                              f"{str(e).splitlines()[0] if str(e) else ''}") from None
    if any(t.data_location == onnx.TensorProto.EXTERNAL for t in model.graph.initializer):
        raise CheckpointError(f"{path}: its weights are in external data files, which are not read")
    return model


def load_onnx_weights(path: str):
    graph = read_onnx_model(path).graph
    from onnx import numpy_helper  # importable: read_onnx_model checked
    arrays = {t.name: t for t in graph.initializer}
    names = _names_from_nodes(graph, arrays)
    tensors: dict[str, np.ndarray] = {}
    for name, proto in arrays.items():
        key = name if STATE_KEY.match(name) else names.get(name)
        if key is None:
            continue
        if key in tensors:
            raise CheckpointError(f"{path}: two initializers map to the state_dict key {key!r}")
        array = numpy_helper.to_array(proto)
        if not np.issubdtype(array.dtype, np.floating):
            continue
        tensors[key] = np.ascontiguousarray(array, dtype=np.float32)
    if not tensors:
        raise CheckpointError(f"{path}: no initializer has (or maps to) a state_dict name such as "
                              "'model.0.conv.weight'")
    ordered = _in_graph_order(graph, tensors, names)
    return Checkpoint(ordered, None, f"ONNX initializers ({len(ordered)} of {len(arrays)})")


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
