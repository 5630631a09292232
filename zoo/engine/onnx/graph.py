"""The ONNX graph builder the layer translations write into (OnnxGraph: nodes, initializers, names), its types and
errors. `writer.to_onnx` drives it: a recorded network -> an ONNX ModelProto, one or a few nodes per TensorRT layer.

Tensor names are kept: the ONNX value of a TensorRT tensor has the tensor's name, so validation and calibration
find tensors by the names the builders gave them. Helper values a translation needs get names derived from the
layer's (`<layer>/<what>`), made unique. A layer type or plugin with no ONNX form is an error naming it.
"""
from __future__ import annotations

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

from zoo.trt_api import trt

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
