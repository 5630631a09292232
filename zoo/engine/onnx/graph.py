"""The ONNX writer: a recorded network -> an ONNX ModelProto, one or a few ONNX nodes per TensorRT layer.

    model = to_onnx(network)                       # every marked output is a graph output
    model = to_onnx(network, batch=(1, 8, 16))     # the dynamic batch as the symbolic dimension "batch"

Tensor names are kept: the ONNX value of a TensorRT tensor has the tensor's name, so validation and calibration
find tensors by the names the builders gave them. Helper values a translation needs get names derived from the
layer's (`<layer>/<what>`), made unique. A layer type or plugin with no ONNX form is an error naming it.
"""
from __future__ import annotations

import json

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

from ..api import trt

OPSET = 17               # TensorRT 10's parser, ONNX Runtime, OpenVINO and the TF-Lite converters all read it
PRODUCER = "trt-zoo"

ONNX_TYPES = {
    trt.float32: TensorProto.FLOAT, trt.float16: TensorProto.FLOAT16, trt.bfloat16: TensorProto.BFLOAT16,
    trt.int8: TensorProto.INT8, trt.int32: TensorProto.INT32, trt.int64: TensorProto.INT64,
    trt.bool: TensorProto.BOOL, trt.uint8: TensorProto.UINT8,
}
NUMPY_TYPES = {trt.float32: np.float32, trt.float16: np.float16, trt.int8: np.int8, trt.int32: np.int32,
               trt.int64: np.int64, trt.bool: np.bool_, trt.uint8: np.uint8}


class OnnxExportError(ValueError):
    """A network the ONNX writer cannot express; names the layer or plugin."""


def onnx_type(dtype) -> int:
    try:
        return ONNX_TYPES[dtype]
    except KeyError:
        raise OnnxExportError(f"TensorRT type {dtype} has no ONNX equivalent in the zoo's writer") from None


class OnnxGraph:
    """What a layer translation writes into: nodes, constants, and fresh names."""

    def __init__(self):
        self.nodes: list[onnx.NodeProto] = []
        self.pending: list[onnx.NodeProto] = []   # nodes that must follow the current layer's others
        self.initializers: list[onnx.TensorProto] = []
        self._used: set[str] = set()       # value names
        self._node_names: set[str] = set()
        self._names: dict[int, str] = {}   # id(ITensor) -> ONNX value name

    # --- names
    @staticmethod
    def _unique(base: str, used: set[str]) -> str:
        name, k = base, 1
        while name in used:
            k += 1
            name = f"{base}~{k}"
        used.add(name)
        return name

    def fresh(self, base: str) -> str:
        """A new value name derived from `base`."""
        return self._unique(base, self._used)

    def name_of(self, tensor) -> str:
        """The ONNX value holding a network tensor (its TensorRT name, made unique once)."""
        key = id(tensor)
        if key not in self._names:
            self._names[key] = self.fresh(tensor.name)
        return self._names[key]

    def node_name(self, base: str) -> str:
        return self._unique(base, self._node_names)

    # --- building blocks
    def node(self, op: str, inputs: list[str], name: str, outputs: list[str] | None = None, count: int = 1,
             **attrs) -> list[str]:
        """Add one node; returns its output names (fresh names derived from `name` unless given)."""
        outputs = outputs or [self.fresh(f"{name}/{op}" + (f":{i}" if i else "")) for i in range(count)]
        self.nodes.append(helper.make_node(op, inputs, outputs, name=self.node_name(name), **attrs))
        return outputs

    def op(self, op: str, inputs: list[str], name: str, **attrs) -> str:
        """One node with one output; the output's name."""
        return self.node(op, inputs, name, **attrs)[0]

    def const(self, array, name: str, dtype=None) -> str:
        """An initializer holding `array` (as `dtype`, a numpy dtype, when given)."""
        array = np.asarray(array, dtype=dtype) if dtype is not None else np.asarray(array)
        value = self.fresh(name)
        self.initializers.append(numpy_helper.from_array(np.array(array, order="C"), value))  # keeps rank 0
        return value

    def int64s(self, values, name: str) -> str:
        return self.const(np.asarray(values, np.int64).reshape(-1), name)

    def scalar_like(self, value: float, dtype, name: str) -> str:
        """A rank-0 constant of the TensorRT type `dtype` (scalars broadcast against any rank in ONNX)."""
        return self.const(np.asarray(value, NUMPY_TYPES.get(dtype, np.float32)), name)


def to_onnx(network, batch: tuple[int, int, int] | None = None, metadata: dict | None = None,
            graph_name: str | None = None) -> onnx.ModelProto:
    """The ONNX model of `network`'s marked outputs. `batch`: (min, opt, max) of the first input dimension; when
    min == max it becomes that fixed size, otherwise the symbolic dimension 'batch' (the range goes to metadata)."""
    from .layers import translate_layer
    if not network.num_outputs:
        raise OnnxExportError("the network has no outputs: mark at least one tensor with mark_output")
    graph = OnnxGraph()
    inputs = [graph_input(graph, t, batch) for t in network._inputs]
    layers = needed_layers(network)
    for layer in layers:  # network tensors keep their names; helper values are named around them
        for tensor in layer._outputs:
            graph.name_of(tensor)
    for layer in layers:
        translate_layer(graph, layer)
    outputs = [graph_output(graph, t) for t in network._outputs]
    model = helper.make_model(
        helper.make_graph(graph.nodes, graph_name or network.name or "network", inputs, outputs,
                          graph.initializers),
        opset_imports=[helper.make_opsetid("", OPSET)], producer_name=PRODUCER)
    model.ir_version = 8  # the IR version of opset 17, so older runtimes open the file
    props = dict(metadata or {})
    if batch is not None:
        props["batch_range"] = ":".join(map(str, batch))
    for key, value in props.items():
        entry = model.metadata_props.add()
        entry.key, entry.value = key, value if isinstance(value, str) else json.dumps(value)
    return model


def needed_layers(network) -> list:
    """The layers the outputs depend on, in network (topological) order; shapes and types inferred."""
    needed: set[int] = set()
    stack = [t._layer for t in network._outputs if t._layer is not None]
    while stack:
        layer = stack.pop()
        if id(layer) not in needed:
            needed.add(id(layer))
            stack.extend(t._layer for t in layer._inputs if t is not None and t._layer is not None)
    layers = [layer for layer in network._layers if id(layer) in needed]
    for layer in layers:
        for out in layer._outputs:
            network._meta(out)  # raises NetworkError naming the layer, as a TensorRT build would
    return layers


def _shape_proto(shape, batch) -> list:
    dims = []
    for i, d in enumerate(shape):
        if d >= 0:
            dims.append(int(d))
        elif i == 0 and batch is not None and batch[0] == batch[2]:
            dims.append(int(batch[0]))
        else:
            dims.append("batch" if i == 0 else None)
    return dims


def graph_input(graph: OnnxGraph, tensor, batch) -> onnx.ValueInfoProto:
    return helper.make_tensor_value_info(graph.name_of(tensor), onnx_type(tensor.dtype),
                                         _shape_proto(tensor.shape, batch))


def graph_output(graph: OnnxGraph, tensor) -> onnx.ValueInfoProto:
    return helper.make_tensor_value_info(graph.name_of(tensor), onnx_type(tensor.dtype),
                                         _shape_proto(tensor.shape, None))
