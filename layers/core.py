"""Functional ops over TensorRT's INetworkDefinition, each `f(net, weights, prefix, x, ...) -> ITensor`.

Naming is the contract with validation: the layer that uses weights `<prefix>.weight` is named `<prefix>`, and the
tensor a PyTorch module would output is named after that module. Helper tensors that no module outputs get
`<prefix>/<what>` names. The weights' dtype follows the input's (strongly typed networks need them equal), and
BatchNorm is folded in FP32 before any cast.
"""
from __future__ import annotations

import numpy as np

from wts.weight_map import WeightMap
from zoo.trt_api import trt
from .precision import precision_of

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


def quantize_dequantize(net, x, scale, name: str, axis: int | None = None, out_type=None):
    """An explicit-quantization pair: Q to INT8 with FP32 `scale` (a scalar, or per channel along `axis`), then DQ
    to `out_type` (default: x's type). TensorRT fuses DQ -> conv/matmul -> Q into INT8 kernels."""
    s = np.ascontiguousarray(np.asarray(scale, np.float32))
    scale_t = constant(net, s, f"{name}/scale")
    q = net.add_quantize(x, scale_t, trt.int8)
    dq = net.add_dequantize(named(q, f"{name}/quantize"), scale_t, out_type if out_type is not None else x.dtype)
    if axis is not None:
        q.axis = dq.axis = axis
    return named(dq, f"{name}/dequantize")


def _weight_scales(w: np.ndarray) -> np.ndarray:
    """Per output channel (axis 0), symmetric: max|w| / 127, floored so that scales stay > 0."""
    amax = np.abs(w.reshape(len(w), -1)).max(axis=1)
    return (np.maximum(amax, 1e-8) / 127).astype(np.float32)


def _quantized_weights(net, w32: np.ndarray, name: str, dtype):
    """FP32 weights as a constant through a per-channel Q/DQ pair, dequantized to the activations' type."""
    return quantize_dequantize(net, constant(net, w32, name), _weight_scales(w32), name, axis=0, out_type=dtype)


def conv2d(net, weights: WeightMap, prefix: str, x, out_channels: int, kernel, stride=1, padding=0, groups=1,
           dilation=1, bias: bool = True):
    """nn.Conv2d. `padding` is an int, (h, w), or ((top, left), (bottom, right)) for uneven padding."""
    k = _pair(kernel)
    w = weights.take(f"{prefix}.weight", (out_channels, x.shape[1] // groups, *k))
    b = weights.take(f"{prefix}.bias", (out_channels,)) if bias else None
    return _convolution(net, weights, prefix, prefix, x, w, b, stride, padding, groups, dilation)


def conv2d_arrays(net, weights: WeightMap, name: str, x, w: np.ndarray, b: np.ndarray | None, stride=1, padding=0,
                  groups=1):
    """A convolution from FP32 arrays the builder derived itself (e.g. some output channels of a stored conv),
    named `name`; precision and INT8 Q/DQ as for `conv2d`. `weights` is only asked for the precision."""
    return _convolution(net, weights, name, name, x, np.ascontiguousarray(w, np.float32),
                        None if b is None else np.ascontiguousarray(b, np.float32), stride, padding, groups)


def conv_bn(net, weights: WeightMap, conv: str, bn: str, x, out_channels: int, kernel, stride=1, padding=0,
            groups=1, eps: float = 1e-5, bias: bool = False):
    """Conv2d (bias=False unless `bias`, as in VGG-BN) then BatchNorm2d (eval). In FP32 two layers, so validation
    sees both outputs; in FP16 and INT8 the BatchNorm is folded into the convolution in FP32 first, as TensorRT would
    fuse it: an FP16 conv output stored before a BatchNorm that subtracts a large mean loses most of its digits (and
    INT8 weight scales must be those of the folded weights).

    Folded weights (an ONNX export, a fused model: `<conv>.bias` present, no `<bn>.*` keys) are a biased
    convolution, named `conv` as in the folded PyTorch module (zoo.engine.folding)."""
    if is_folded(weights, conv, bn):
        return conv2d(net, weights, conv, x, out_channels, kernel, stride, padding, groups, bias=True)
    if precision_of(weights).mode == "fp32":
        y = conv2d(net, weights, conv, x, out_channels, kernel, stride, padding, groups, bias=bias)
        return batch_norm(net, weights, bn, y, eps)
    k = _pair(kernel)
    w = weights.take(f"{conv}.weight", (out_channels, x.shape[1] // groups, *k))
    scale, shift = batch_norm_affine(weights, bn, out_channels, eps)
    if bias:
        shift = (shift + scale * weights.take(f"{conv}.bias", (out_channels,))).astype(np.float32)
    return _convolution(net, weights, conv, bn, x, w * scale.reshape(-1, 1, 1, 1), shift, stride, padding, groups)


def conv_bn_arrays(weights: WeightMap, conv: str, bn: str, out_channels: int, in_per_group: int, kernel,
                   eps: float = 1e-5) -> tuple[np.ndarray, np.ndarray]:
    """The FP32 (kernel, bias) of a bias-free Conv2d and its BatchNorm2d as one biased convolution, for builders
    that merge several such branches into one (re-parameterised blocks); folded weights are taken as they are."""
    k = _pair(kernel)
    w = weights.take(f"{conv}.weight", (out_channels, in_per_group, *k)).astype(np.float32)
    if is_folded(weights, conv, bn):
        return w, weights.take(f"{conv}.bias", (out_channels,)).astype(np.float32)
    scale, shift = batch_norm_affine(weights, bn, out_channels, eps)
    return (w * scale.reshape(-1, 1, 1, 1)).astype(np.float32), shift


def is_folded(weights: WeightMap, conv: str, bn: str) -> bool:
    """Whether BatchNorm `bn` was folded into convolution `conv` (a conv bias, no BatchNorm statistics)."""
    return f"{bn}.running_mean" not in weights and f"{conv}.bias" in weights


def _convolution(net, weights: WeightMap, layer_name: str, output_name: str, x, w: np.ndarray, b, stride, padding,
                 groups, dilation=1):
    """A convolution from FP32 arrays, cast to x's type, or with Q/DQ on input and kernel when INT8 asks for it."""
    dtype = weight_dtype(x)
    out_channels, k = w.shape[0], w.shape[2:]
    b = None if b is None else b.astype(dtype)
    scale = precision_of(weights).input_scale(layer_name, x)
    if scale is None:
        layer = net.add_convolution_nd(x, out_channels, k, w.astype(dtype), b)
    else:  # INT8: Q/DQ on the input (per tensor) and on the kernel (per output channel), given as input 1
        xq = quantize_dequantize(net, x, scale, f"{layer_name}/input")
        layer = net.add_convolution_nd(xq, out_channels, k, trt.Weights(x.dtype), b)
        layer.set_input(1, _quantized_weights(net, np.ascontiguousarray(w, np.float32), f"{layer_name}.weight",
                                              x.dtype))
    if isinstance(padding, tuple) and len(padding) == 2 and not isinstance(padding[0], int):
        layer.stride_nd, layer.dilation_nd = _pair(stride), _pair(dilation)
        layer.pre_padding, layer.post_padding = padding  # ((top, left), (bottom, right)): TF's "SAME" is uneven
    else:
        layer.stride_nd, layer.padding_nd, layer.dilation_nd = _pair(stride), _pair(padding), _pair(dilation)
    layer.num_groups = groups
    layer.name = layer_name
    out = layer.get_output(0)
    out.name = output_name
    return out


def batch_norm_affine(weights: WeightMap, prefix: str, c: int, eps: float) -> tuple[np.ndarray, np.ndarray]:
    """BatchNorm2d in eval mode as y = x * scale + shift, computed in FP32."""
    gamma, beta = weights.take(f"{prefix}.weight", (c,)), weights.take(f"{prefix}.bias", (c,))
    mean, var = weights.take(f"{prefix}.running_mean", (c,)), weights.take(f"{prefix}.running_var", (c,))
    scale = (gamma / np.sqrt(var + np.float32(eps))).astype(np.float32)
    return scale, (beta - mean * scale).astype(np.float32)


def batch_norm(net, weights: WeightMap, prefix: str, x, eps: float):
    """BatchNorm2d in eval mode as a per-channel scale layer: y = x * s + (beta - mean * s), s = gamma/sqrt(var+eps)."""
    scale, shift = batch_norm_affine(weights, prefix, x.shape[1], eps)
    dtype = weight_dtype(x)
    layer = net.add_scale(x, trt.ScaleMode.CHANNEL, shift.astype(dtype), scale.astype(dtype), None)
    return named(layer, prefix)


def channel_affine(net, x, scale: np.ndarray, shift: np.ndarray, name: str):
    """y = x * scale[c] + shift[c] per channel (axis 1), for constants that no BatchNorm key holds."""
    dtype = weight_dtype(x)
    layer = net.add_scale(x, trt.ScaleMode.CHANNEL, np.asarray(shift, dtype), np.asarray(scale, dtype), None)
    layer.channel_axis = 1
    return named(layer, name)


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


def prelu(net, weights: WeightMap, prefix: str, x):
    """nn.PReLU with one slope per channel (axis 1), as TensorRT's parametric ReLU layer: the slopes are a constant
    of the input's rank, shaped (1, C, 1, ...) so that they broadcast over every other axis."""
    c = x.shape[1]
    slopes = weights.take(f"{prefix}.weight", (1, c, *(1,) * (len(x.shape) - 2)), weight_dtype(x))
    return named(net.add_parametric_relu(x, constant(net, slopes, f"{prefix}.weight")), prefix)


def _pool(net, x, kind, window, stride, padding, ceil_mode: bool = False):
    layer = net.add_pooling_nd(x, kind, _pair(window))
    layer.stride_nd = _pair(stride if stride is not None else window)
    layer.padding_nd = _pair(padding)
    if ceil_mode:  # TensorRT's output size ceil((M - K) / S) + 1: a last, partial window, as torch's ceil_mode
        layer.padding_mode = trt.PaddingMode.EXPLICIT_ROUND_UP
    return layer


def max_pool(net, x, name: str, window, stride=None, padding=0, ceil_mode: bool = False):
    """Like nn.MaxPool2d: stride defaults to the window (TensorRT's own default is 1)."""
    return named(_pool(net, x, trt.PoolingType.MAX, window, stride, padding, ceil_mode), name)


def avg_pool(net, x, name: str, window, stride=None, padding=0, count_include_pad: bool = True):
    """Like nn.AvgPool2d, including its count_include_pad=True default (TensorRT's default excludes padding)."""
    layer = _pool(net, x, trt.PoolingType.AVERAGE, window, stride, padding)
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


def shuffle(net, x, name: str, reshape=None, first=None, second=None):
    """One shuffle layer with whichever of TensorRT's three steps are given: first transpose, reshape (0 copies
    a dimension), second transpose."""
    layer = net.add_shuffle(x)
    if first is not None:
        layer.first_transpose = tuple(first)
    if reshape is not None:
        layer.reshape_dims = tuple(reshape)
    if second is not None:
        layer.second_transpose = tuple(second)
    return named(layer, name)


def constant(net, array: np.ndarray, name: str):
    return named(net.add_constant(array.shape, np.ascontiguousarray(array)), name)


def linear(net, weights: WeightMap, prefix: str, x, out_features: int, bias: bool = True):
    """nn.Linear on a [..., K] input: a matrix multiply with the transposed weight (TensorRT has no FC layer)."""
    w32 = weights.take(f"{prefix}.weight", (out_features, x.shape[-1]))
    b32 = weights.take(f"{prefix}.bias", (out_features,)) if bias else None
    return linear_from_arrays(net, weights, prefix, x, w32, b32)


def linear_from_arrays(net, weights: WeightMap, name: str, x, w32: np.ndarray, b32: np.ndarray | None):
    """x @ w32.T + b32 for FP32 arrays that are not one `<name>.weight` key (e.g. a slice of an attention's
    in_proj_weight). TensorRT's matrix multiply needs operands of equal rank: for a rank-n input the weight and bias
    get n - 2 leading ones."""
    dtype, lead = weight_dtype(x), (1,) * (len(x.shape) - 2)
    scale = precision_of(weights).input_scale(name, x)
    if scale is None:
        w = constant(net, w32.astype(dtype), f"{name}.weight")
    else:  # INT8: Q/DQ on the input (per tensor) and on the weight (per output feature)
        x = quantize_dequantize(net, x, scale, f"{name}/input")
        w = _quantized_weights(net, w32, f"{name}.weight", x.dtype)
    if lead:
        w = reshape(net, w, (*lead, *w32.shape), f"{name}.weight/reshape")
    y = net.add_matrix_multiply(x, trt.MatrixOperation.NONE, w, trt.MatrixOperation.TRANSPOSE)
    if b32 is None:
        return named(y, name)
    named(y, f"{name}/matmul")
    b = constant(net, b32.reshape(*lead, 1, -1).astype(dtype), f"{name}.bias")
    return named(net.add_elementwise(y.get_output(0), b, trt.ElementWiseOperation.SUM), name)


def add(net, a, b, name: str):
    return named(net.add_elementwise(a, b, trt.ElementWiseOperation.SUM), name)


def multiply(net, a, b, name: str):
    return named(net.add_elementwise(a, b, trt.ElementWiseOperation.PROD), name)


def concat(net, tensors, name: str, axis: int = 1):
    layer = net.add_concatenation(list(tensors))
    layer.axis = axis
    return named(layer, name)


def split(net, x, sizes, names, axis: int = 1):
    """torch.split along a static axis as gathers with constant indices (a slice would need the dynamic batch
    dimension as a shape input). Returns one tensor per size, named by `names`."""
    if sum(sizes) != x.shape[axis]:
        raise ValueError(f"split of {x.name!r}: sizes {list(sizes)} do not add up to its {x.shape[axis]} channels")
    parts, start = [], 0
    for size, name in zip(sizes, names):
        indices = constant(net, np.arange(start, start + size, dtype=np.int32), f"{name}/indices")
        parts.append(named(net.add_gather(x, indices, axis), name))
        start += size
    return parts


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


def upsample_linear(net, x, name: str, factor: int, align_corners: bool):
    """F.interpolate(x, scale_factor=factor, mode="bilinear", align_corners=...) on NCHW: TensorRT's LINEAR resize
    with ALIGN_CORNERS or HALF_PIXEL coordinates (PyTorch's align_corners=False)."""
    layer = net.add_resize(x)
    layer.resize_mode = trt.InterpolationMode.LINEAR
    layer.coordinate_transformation = (trt.ResizeCoordinateTransformation.ALIGN_CORNERS if align_corners
                                       else trt.ResizeCoordinateTransformation.HALF_PIXEL)
    layer.scales = (1.0, 1.0, float(factor), float(factor))
    return named(layer, name)


def clamp(net, x, low: float, high: float, name: str):
    """torch.clamp(x, low, high) as TensorRT's CLIP activation."""
    layer = net.add_activation(x, trt.ActivationType.CLIP)
    layer.alpha, layer.beta = float(low), float(high)
    return named(layer, name)


def cast(net, x, to_type, name: str):
    return named(net.add_cast(x, to_type), name)


def conv_transpose2d(net, weights: WeightMap, prefix: str, x, out_channels: int, kernel, stride=1, bias: bool = True):
    """nn.ConvTranspose2d (no padding, groups or dilation) as `add_deconvolution_nd`: TensorRT takes PyTorch's
    (in, out, kh, kw) kernel layout as it is. Named `prefix`; never quantized (INT8 builds keep it in FP16)."""
    k, dtype = _pair(kernel), weight_dtype(x)
    w = weights.take(f"{prefix}.weight", (x.shape[1], out_channels, *k)).astype(dtype)
    b = weights.take(f"{prefix}.bias", (out_channels,)).astype(dtype) if bias else None
    layer = net.add_deconvolution_nd(x, out_channels, k, w, b)
    layer.stride_nd = _pair(stride)
    return named(layer, prefix)
