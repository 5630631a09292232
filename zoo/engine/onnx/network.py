"""The network builders write into when the ONNX backend is chosen.

Recording a network and inferring its shapes is the same work on every executor that is not TensorRT, so this is
the reference backend's INetworkDefinition: the same classes, methods, properties, defaults and errors (a builder
line that TensorRT would reject fails here too, naming the layer). What differs is what happens after
`build`: the ONNX writer translates the recorded layers (zoo.engine.onnx.layers) and ONNX Runtime executes them.
Plugin requests come from `zoo.trt_api.plugins.op`, as on the reference backend.
"""
from __future__ import annotations

from ..reference import network as _reference

# The recorder is shared on purpose: one implementation of TensorRT's build-time API (see tests/test_conformance.py).
INetworkDefinition = _reference.INetworkDefinition
ITensor = _reference.ITensor
ILayer = _reference.ILayer
LAYER_CLASSES = _reference.LAYER_CLASSES
NetworkError = _reference.NetworkError
