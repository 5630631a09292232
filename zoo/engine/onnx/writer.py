"""A recorded network written as one ONNX model: `to_onnx`, over the graph builder (graph.py) and the translation of
each layer class (layers.py); it imports both, and they import neither it.

    model = to_onnx(network)                       # every marked output is a graph output
    model = to_onnx(network, batch=(1, 8, 16))     # the dynamic batch as the symbolic dimension "batch"
"""
from __future__ import annotations

import json

import onnx
from onnx import helper

from .graph import OPSET, PRODUCER, OnnxExportError, OnnxGraph, onnx_type
from .layers import translate_layer


def to_onnx(network, batch: tuple[int, int, int] | None = None, metadata: dict | None = None,
            graph_name: str | None = None) -> onnx.ModelProto:
    """The ONNX model of `network`'s marked outputs. `batch`: (min, opt, max) of the first input dimension; when
    min == max it becomes that fixed size, otherwise the symbolic dimension 'batch' (the range goes to metadata)."""
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
