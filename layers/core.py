"""Functional ops over TensorRT's INetworkDefinition, each `f(net, weights, prefix, x, ...) -> ITensor`.

Naming is the contract with validation: the layer that uses weights `<prefix>.weight` is named `<prefix>`, and the
tensor a PyTorch module would output is named after that module. Helper tensors that no module outputs get
`<prefix>/<what>` names. The weights' dtype follows the input's (strongly typed networks need them equal), and
BatchNorm is folded in FP32 before any cast.
"""
from __future__ import annotations

import numpy as np

from wts.weight_map import WeightMap
from zoo.engine.api import trt

_NUMPY_OF = {trt.float32: np.float32, trt.float16: np.float16}


def named(layer, name: str, output: int = 0):
    """Name a layer and its output tensor; returns the tensor."""
    layer.name = name
    tensor = layer.get_output(output)
    tensor.name = name
    return tensor


def rename(tensor, name: str):
    """Give a block's output the block's name (the outermost module whose output it is)."""
    tensor.name = name
    return tensor


def weight_dtype(x):
    try:
        return _NUMPY_OF[x.dtype]
    except KeyError:
        raise ValueError(f"tensor {x.name!r} has type {x.dtype}; layers with weights take FP32 or FP16 inputs") from None


def _pair(v) -> tuple[int, int]:
    return (v, v) if isinstance(v, int) else tuple(v)


def conv2d(net, weights: WeightMap, prefix: str, x, out_channels: int, kernel, stride=1, padding=0, groups=1,
           dilation=1, bias: bool = True):
    k = _pair(kernel)
    in_channels = x.shape[1]
    dtype = weight_dtype(x)
    w = weights.take(f"{prefix}.weight", (out_channels, in_channels // groups, *k), dtype)
    b = weights.take(f"{prefix}.bias", (out_channels,), dtype) if bias else None
    layer = net.add_convolution_nd(x, out_channels, k, w, b)
    layer.stride_nd, layer.padding_nd, layer.dilation_nd = _pair(stride), _pair(padding), _pair(dilation)
    layer.num_groups = groups
    return named(layer, prefix)


def batch_norm(net, weights: WeightMap, prefix: str, x, eps: float):
    """BatchNorm2d in eval mode as a per-channel scale layer: y = x * s + (beta - mean * s), s = gamma/sqrt(var+eps)."""
    c = x.shape[1]
    gamma, beta = weights.take(f"{prefix}.weight", (c,)), weights.take(f"{prefix}.bias", (c,))
    mean, var = weights.take(f"{prefix}.running_mean", (c,)), weights.take(f"{prefix}.running_var", (c,))
    scale = (gamma / np.sqrt(var + np.float32(eps))).astype(np.float32)
    shift = (beta - mean * scale).astype(np.float32)
    dtype = weight_dtype(x)
    layer = net.add_scale(x, trt.ScaleMode.CHANNEL, shift.astype(dtype), scale.astype(dtype), None)
    return named(layer, prefix)


def activation(net, x, kind: str, name: str, alpha: float = 0.0, beta: float = 0.0):
    """relu, sigmoid, tanh, leaky_relu (alpha = slope), silu (x * sigmoid(x): TensorRT has no SiLU), gelu."""
    if kind == "silu":
        sig = named(net.add_activation(x, trt.ActivationType.SIGMOID), f"{name}/sigmoid")
        return named(net.add_elementwise(x, sig, trt.ElementWiseOperation.PROD), name)
    types = {"relu": "RELU", "sigmoid": "SIGMOID", "tanh": "TANH", "leaky_relu": "LEAKY_RELU", "gelu": "GELU_ERF"}
    if kind not in types:
        raise ValueError(f"unknown activation {kind!r} (known: {sorted(types) + ['silu']})")
    layer = net.add_activation(x, getattr(trt.ActivationType, types[kind]))
    layer.alpha, layer.beta = alpha, beta
    return named(layer, name)


def _pool(net, x, kind, window, stride, padding, name):
    layer = net.add_pooling_nd(x, kind, _pair(window))
    layer.stride_nd = _pair(stride if stride is not None else window)
    layer.padding_nd = _pair(padding)
    return layer


def max_pool(net, x, name: str, window, stride=None, padding=0):
    """Like nn.MaxPool2d: stride defaults to the window (TensorRT's own default is 1)."""
    return named(_pool(net, x, trt.PoolingType.MAX, window, stride, padding, name), name)


def avg_pool(net, x, name: str, window, stride=None, padding=0, count_include_pad: bool = True):
    """Like nn.AvgPool2d, including its count_include_pad=True default (TensorRT's default excludes padding)."""
    layer = _pool(net, x, trt.PoolingType.AVERAGE, window, stride, padding, name)
    layer.average_count_excludes_padding = not count_include_pad
    return named(layer, name)


def global_avg_pool(net, x, name: str):
    """nn.AdaptiveAvgPool2d(1): mean over H and W, keeping them as 1."""
    return named(net.add_reduce(x, trt.ReduceOperation.AVG, (1 << 2) | (1 << 3), True), name)


def flatten(net, x, name: str):
    """torch.flatten(x, 1)."""
    layer = net.add_shuffle(x)
    layer.reshape_dims = (0, -1)
    return named(layer, name)


def reshape(net, x, dims, name: str):
    layer = net.add_shuffle(x)
    layer.reshape_dims = tuple(dims)
    return named(layer, name)


def transpose(net, x, perm, name: str):
    layer = net.add_shuffle(x)
    layer.first_transpose = tuple(perm)
    return named(layer, name)


def constant(net, array: np.ndarray, name: str):
    return named(net.add_constant(array.shape, np.ascontiguousarray(array)), name)


def linear(net, weights: WeightMap, prefix: str, x, out_features: int, bias: bool = True):
    """nn.Linear on a [B, K] input: a matrix multiply with the transposed weight (TensorRT has no FC layer)."""
    k, dtype = x.shape[-1], weight_dtype(x)
    w = constant(net, weights.take(f"{prefix}.weight", (out_features, k), dtype), f"{prefix}.weight")
    y = net.add_matrix_multiply(x, trt.MatrixOperation.NONE, w, trt.MatrixOperation.TRANSPOSE)
    if not bias:
        return named(y, prefix)
    named(y, f"{prefix}/matmul")
    b = constant(net, weights.take(f"{prefix}.bias", (1, out_features), dtype), f"{prefix}.bias")
    return named(net.add_elementwise(y.get_output(0), b, trt.ElementWiseOperation.SUM), prefix)


def add(net, a, b, name: str):
    return named(net.add_elementwise(a, b, trt.ElementWiseOperation.SUM), name)


def multiply(net, a, b, name: str):
    return named(net.add_elementwise(a, b, trt.ElementWiseOperation.PROD), name)


def concat(net, tensors, name: str, axis: int = 1):
    layer = net.add_concatenation(list(tensors))
    layer.axis = axis
    return named(layer, name)


def softmax(net, x, name: str, axis: int = 1):
    layer = net.add_softmax(x)
    layer.axes = 1 << axis
    return named(layer, name)


def upsample_nearest(net, x, name: str, factor: int = 2):
    """nn.Upsample(scale_factor=factor, mode='nearest') on NCHW."""
    layer = net.add_resize(x)
    layer.resize_mode = trt.InterpolationMode.NEAREST
    layer.scales = (1.0, 1.0, float(factor), float(factor))
    return named(layer, name)


def cast(net, x, to_type, name: str):
    return named(net.add_cast(x, to_type), name)
