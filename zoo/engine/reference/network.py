"""The reference backend's INetworkDefinition: TensorRT's network-definition API, executed on a CPU with PyTorch.

Class, method, parameter and property names are TensorRT 10/11's (a conformance test holds them to the real API
listings). Semantics follow TensorRT, not PyTorch: strongly typed dtypes, shapes known when a layer is added (with
-1 for dynamic dimensions), properties set after creation (`conv.stride_nd = (2, 2)`), pooling stride 1 by default,
bitmask axes, concatenation/softmax on axis `rank - 3` by default, no implicit rank broadcasting.

Shapes are inferred lazily: setting a property marks the layer stale, and the next `tensor.shape` re-infers from the
first stale layer onwards (layers are kept in topological order). Errors name the layer and the offending value.
Anything TensorRT offers that this backend does not implement raises `NotImplementedError` naming the API.
"""
from __future__ import annotations

import math
from typing import Any, Callable, Sequence

import numpy as np
import torch
import torch.nn.functional as F

from zoo.trt_api import trt
from zoo.trt_api.values import Dims, Weights, numpy_to_trt
from zoo.trt_api import plugins as ref_plugin


class NetworkError(ValueError):
    """A network that TensorRT would reject: bad shapes, dtypes or weights. Names the layer."""


# ----------------------------------------------------------------------------------------------------------------
# dtypes and small value types

_TORCH_DTYPES = {
    trt.float32: torch.float32, trt.float16: torch.float16, trt.bfloat16: torch.bfloat16, trt.int8: torch.int8,
    trt.int32: torch.int32, trt.int64: torch.int64, trt.bool: torch.bool, trt.uint8: torch.uint8,
}
_FLOAT_TYPES = (trt.float32, trt.float16, trt.bfloat16)


def torch_dtype(dtype) -> torch.dtype:
    try:
        return _TORCH_DTYPES[dtype]
    except KeyError:
        raise NotImplementedError(f"the reference backend does not execute tensors of type {dtype}") from None


def trt_dtype(dtype) -> Any:
    """The TensorRT DataType of a numpy or torch dtype."""
    if isinstance(dtype, torch.dtype):
        for trt_type, torch_type in _TORCH_DTYPES.items():
            if torch_type == dtype:
                return trt_type
        raise NotImplementedError(f"no TensorRT type for {dtype}")
    return numpy_to_trt(dtype)


def _weights_array(w) -> np.ndarray | None:
    """None or an empty Weights mean 'no weights'; numpy arrays pass implicitly, as in TensorRT."""
    if w is None:
        return None
    if isinstance(w, Weights):
        return w.numpy()
    if isinstance(w, np.ndarray):
        return np.ascontiguousarray(w)
    raise TypeError(f"weights must be a numpy array or Weights, got {type(w).__name__}")


def _volume(shape: Sequence[int]) -> int:
    return int(np.prod(shape, dtype=np.int64)) if len(shape) else 1


def _axes_from_mask(mask: int, rank: int) -> list[int]:
    axes = [a for a in range(rank) if mask >> a & 1]
    if mask >> rank:
        raise NetworkError(f"axes bitmask {bin(mask)} names an axis beyond rank {rank}")
    return axes


def _default_channel_axis(rank: int) -> int:
    """TensorRT's default for concatenation/softmax/scale: the third axis from the end (C of NCHW), or 0."""
    return max(0, rank - 3)


# ----------------------------------------------------------------------------------------------------------------
# tensors


class ITensor:
    def __init__(self, network: INetworkDefinition, name: str, layer: ILayer | None = None, index: int = 0):
        self._network, self._name, self._layer, self._output_index = network, name, layer, index
        self._input_shape: Dims | None = None  # network inputs only
        self._input_dtype = None

    @property
    def name(self) -> str:
        return self._name

    @name.setter
    def name(self, value: str):
        self._name = str(value)

    @property
    def shape(self) -> Dims:
        return self._network._meta(self)[0]

    @shape.setter
    def shape(self, value):
        if self._layer is not None:
            raise NetworkError(f"tensor {self._name!r}: only network inputs have a settable shape")
        self._input_shape = Dims(value)
        self._network._touch(None)

    @property
    def dtype(self):
        return self._network._meta(self)[1]

    @property
    def is_network_input(self) -> bool:
        return self._layer is None

    @property
    def is_network_output(self) -> bool:
        return any(t is self for t in self._network._outputs)

    @property
    def is_shape_tensor(self) -> bool:
        return False

    @property
    def is_execution_tensor(self) -> bool:
        return True

    def __repr__(self):
        return f"ITensor({self._name!r})"


# ----------------------------------------------------------------------------------------------------------------
# layers

def _setting(name: str, convert: Callable | None = None):
    """A layer property: stored in `_attrs`, serialisable, and marking the layer stale when set."""

    def get(self):
        return self._attrs[name]

    def set(self, value):
        self._attrs[name] = convert(value) if convert else value
        self._network._touch(self)

    return property(get, set)


def _weights_setting(name: str):
    def get(self):
        array = self._weights.get(name)
        return Weights(array) if array is not None else Weights()

    def set(self, value):
        array = _weights_array(value)
        if array is None or array.size == 0:
            self._weights.pop(name, None)
        else:
            self._weights[name] = array
        self._network._touch(self)

    return property(get, set)


def _dims2(value) -> Dims:
    return Dims(value)


class ILayer:
    _TYPE = ""            # trt.LayerType member name
    _TYPE_LABEL = ""      # as in TensorRT's default layer names, e.g. "Convolution"

    def __init__(self, network: INetworkDefinition, inputs: Sequence[ITensor | None], num_outputs: int = 1,
                 attrs: dict | None = None, weights: dict | None = None):
        self._network = network
        self._inputs: list[ITensor | None] = list(inputs)
        self._attrs: dict[str, Any] = attrs or {}
        self._weights: dict[str, np.ndarray] = {k: v for k, v in (weights or {}).items() if v is not None}
        self._index = len(network._layers)
        self._name = f"(Unnamed Layer* {self._index}) [{self._TYPE_LABEL}]"
        self._outputs = [ITensor(network, f"{self._name}_output" + (f"_{i}" if i else ""), self, i)
                         for i in range(num_outputs)]
        self._meta_cache: list[tuple[Dims, Any]] | None = None
        self.metadata = ""

    # --- TensorRT's ILayer API
    @property
    def name(self) -> str:
        return self._name

    @name.setter
    def name(self, value: str):
        self._name = str(value)

    @property
    def type(self):
        return getattr(trt.LayerType, self._TYPE)

    @property
    def num_inputs(self) -> int:
        return len(self._inputs)

    @property
    def num_outputs(self) -> int:
        return len(self._outputs)

    def get_input(self, index: int) -> ITensor | None:
        return self._inputs[index]

    def get_output(self, index: int) -> ITensor:
        return self._outputs[index]

    def set_input(self, index: int, tensor: ITensor) -> None:
        if index >= len(self._inputs):
            self._inputs.extend([None] * (index + 1 - len(self._inputs)))
        self._inputs[index] = tensor
        self._network._reorder()
        self._network._touch(self)

    def get_output_type(self, index: int):
        return self._outputs[index].dtype

    # --- backend internals
    def _fail(self, message: str) -> NetworkError:
        return NetworkError(f"layer {self._name!r} ({self._TYPE}): {message}")

    def _infer(self, shapes: list[Dims], dtypes: list) -> list[tuple[Dims, Any]]:
        raise NotImplementedError

    def _run(self, xs: list[torch.Tensor]) -> list[torch.Tensor]:
        raise NotImplementedError

    def _prepare(self) -> None:
        """Called once before execution: turn numpy weights into torch tensors of the right shape."""


def _same_float_dtype(layer: ILayer, dtypes: list, what: str = "inputs"):
    if dtypes[0] not in _FLOAT_TYPES:
        raise layer._fail(f"input type {dtypes[0]} is not a floating-point type")
    if any(d != dtypes[0] for d in dtypes[1:]):
        raise layer._fail(f"{what} must all have type {dtypes[0]} in a strongly typed network, got {dtypes}")
    return dtypes[0]


def _check_weight_dtype(layer: ILayer, name: str, array: np.ndarray | None, dtype) -> None:
    if array is not None and trt_dtype(array.dtype) != dtype:
        raise layer._fail(f"{name} weights are {array.dtype} but the input is {dtype}; strongly typed networks need "
                          f"matching types (cast the weights, or the input with add_cast)")


def _spatial_out(size: int, kernel: int, stride: int, pre: int, post: int, dilation: int, mode) -> int:
    if size < 0:
        return -1
    span = dilation * (kernel - 1) + 1
    if mode == trt.PaddingMode.EXPLICIT_ROUND_DOWN:
        return (size + pre + post - span) // stride + 1
    if mode == trt.PaddingMode.EXPLICIT_ROUND_UP:
        return -(-(size + pre + post - span) // stride) + 1
    raise NotImplementedError(f"padding_mode {mode} is not implemented by the reference backend")


class _WindowLayer(ILayer):
    """What convolution and pooling share: strides, explicit padding, padding mode."""

    stride_nd = _setting("stride_nd", _dims2)
    pre_padding = _setting("pre_padding", _dims2)
    post_padding = _setting("post_padding", _dims2)
    padding_mode = _setting("padding_mode")

    @property
    def padding_nd(self) -> Dims:
        return self._attrs["pre_padding"]

    @padding_nd.setter
    def padding_nd(self, value):
        self._attrs["pre_padding"] = self._attrs["post_padding"] = Dims(value)
        self._network._touch(self)

    def _window_defaults(self, window: Sequence[int]) -> None:
        n = len(window)
        self._attrs.setdefault("stride_nd", Dims((1,) * n))
        self._attrs.setdefault("pre_padding", Dims((0,) * n))
        self._attrs.setdefault("post_padding", Dims((0,) * n))
        self._attrs.setdefault("padding_mode", trt.PaddingMode.EXPLICIT_ROUND_DOWN)

    def _spatial_shape(self, in_shape: Dims, window: Sequence[int], dilation: Sequence[int]) -> list[int]:
        n = len(window)
        if len(in_shape) != n + 2:
            raise self._fail(f"a {n}-D window needs a rank-{n + 2} input, got shape {tuple(in_shape)}")
        out = []
        a = self._attrs
        for i in range(n):
            size = _spatial_out(in_shape[2 + i], window[i], a["stride_nd"][i], a["pre_padding"][i],
                                a["post_padding"][i], dilation[i], a["padding_mode"])
            if in_shape[2 + i] >= 0 and size < 1:
                raise self._fail(f"window {tuple(window)} does not fit input {tuple(in_shape)} with padding "
                                 f"{tuple(a['pre_padding'])}/{tuple(a['post_padding'])}")
            out.append(size)
        return out

    def _check_round_up(self, spatial: Sequence[int], window: Sequence[int], dilation: Sequence[int],
                        pooling: bool) -> None:
        """EXPLICIT_ROUND_UP gives ceil((M - DK) / S) + 1 outputs. Torch's pooling ceil_mode drops a last window that
        starts in the post-padding, and convolution has no ceil mode: refuse those cases rather than return a tensor
        of another shape than the one inferred."""
        a = self._attrs
        if a["padding_mode"] != trt.PaddingMode.EXPLICIT_ROUND_UP:
            return
        for i, size in enumerate(spatial):
            s, pre, post = a["stride_nd"][i], a["pre_padding"][i], a["post_padding"][i]
            up = _spatial_out(size, window[i], s, pre, post, dilation[i], trt.PaddingMode.EXPLICIT_ROUND_UP)
            down = _spatial_out(size, window[i], s, pre, post, dilation[i], trt.PaddingMode.EXPLICIT_ROUND_DOWN)
            if (up - 1) * s >= size + pre if pooling else up != down:
                raise NotImplementedError(
                    f"layer {self._name!r} ({self._TYPE}): EXPLICIT_ROUND_UP on spatial axis {i} (size {size}, window "
                    f"{window[i]}, stride {s}, padding {pre}/{post}) needs a last window beyond the "
                    f"{'padding' if pooling else 'padded input'}, which the reference backend does not implement")

    def _torch_padding(self) -> tuple[tuple[int, ...] | None, tuple[int, ...]]:
        """(explicit F.pad argument or None, symmetric padding for the op)."""
        pre, post = self._attrs["pre_padding"], self._attrs["post_padding"]
        if tuple(pre) == tuple(post):
            return None, tuple(pre)
        pad = []
        for lo, hi in zip(reversed(pre), reversed(post)):
            pad += [lo, hi]
        return tuple(pad), (0,) * len(pre)


class _KernelLayer(_WindowLayer):
    """The settings convolution and deconvolution share (TensorRT gives both layers the same properties)."""
    num_output_maps = _setting("num_output_maps", int)
    kernel_size_nd = _setting("kernel_size_nd", _dims2)
    dilation_nd = _setting("dilation_nd", _dims2)
    num_groups = _setting("num_groups", int)
    kernel = _weights_setting("kernel")
    bias = _weights_setting("bias")


class IConvolutionLayer(_KernelLayer):
    _TYPE, _TYPE_LABEL = "CONVOLUTION", "Convolution"

    def _infer(self, shapes, dtypes):
        a = self._attrs
        dtype = dtypes[0]
        if dtype not in _FLOAT_TYPES:
            raise self._fail(f"input type {dtype} is not a floating-point type (dequantize INT8 first)")
        in_shape, k = shapes[0], a["kernel_size_nd"]
        channels, groups, maps = in_shape[1] if len(in_shape) > 1 else -1, a["num_groups"], a["num_output_maps"]
        if channels < 0:
            raise self._fail("the channel dimension of the input must be known at build time")
        if channels % groups or maps % groups:
            raise self._fail(f"{channels} input channels and {maps} output maps are not divisible by "
                             f"num_groups={groups}")
        expected = (maps, channels // groups, *k)
        kernel = self._weights.get("kernel")
        if len(shapes) > 1 and shapes[1] is not None:  # kernel given as a tensor (set_input(1, ...), e.g. Q/DQ)
            if kernel is not None:
                raise self._fail("kernel weights must be empty when the kernel is given as input 1")
            if tuple(shapes[1]) != expected:
                raise self._fail(f"kernel tensor has shape {tuple(shapes[1])} but {expected} was expected")
            if dtypes[1] != dtype:
                raise self._fail(f"kernel tensor type {dtypes[1]} differs from input type {dtype}")
        elif kernel is None or kernel.size != _volume(expected):
            got = 0 if kernel is None else kernel.size
            raise self._fail(f"kernel weights have {got} values but {'x'.join(map(str, expected))} = "
                             f"{_volume(expected)} were expected")
        else:
            _check_weight_dtype(self, "kernel", kernel, dtype)
        bias = self._weights.get("bias")
        if bias is not None:
            if bias.size != maps:
                raise self._fail(f"bias has {bias.size} values but num_output_maps is {maps}")
            _check_weight_dtype(self, "bias", bias, dtype)
        spatial = self._spatial_shape(in_shape, k, a["dilation_nd"])
        return [(Dims((in_shape[0], maps, *spatial)), dtype)]

    def _prepare(self):
        a = self._attrs
        kernel = self._weights.get("kernel")
        channels = self._inputs[0].shape[1]
        shape = (a["num_output_maps"], channels // a["num_groups"], *a["kernel_size_nd"])
        self._kernel_t = None if kernel is None else torch.from_numpy(kernel.astype(np.float32)).reshape(shape)
        bias = self._weights.get("bias")
        self._bias_t = None if bias is None else torch.from_numpy(bias.astype(np.float32))
        self._pad, self._sym_pad = self._torch_padding()
        self._conv = {1: F.conv1d, 2: F.conv2d, 3: F.conv3d}[len(a["kernel_size_nd"])]

    def _run(self, xs):
        a = self._attrs
        self._check_round_up(xs[0].shape[2:], a["kernel_size_nd"], a["dilation_nd"], pooling=False)
        x = xs[0] if self._pad is None else F.pad(xs[0], self._pad)
        kernel = self._kernel_t if self._kernel_t is not None else xs[1]
        bias = self._bias_t if len(xs) < 3 or xs[2] is None else xs[2]
        return [self._conv(x, kernel, bias, tuple(a["stride_nd"]), self._sym_pad, tuple(a["dilation_nd"]),
                           a["num_groups"])]


class IDeconvolutionLayer(_KernelLayer):
    """Transposed convolution. As in TensorRT (and ONNX ConvTranspose, which onnx-tensorrt maps onto it), the
    kernel is (input channels, num_output_maps / num_groups, *kernel_size): PyTorch's ConvTranspose layout. Each
    spatial output size is (I - 1) * S + D * (K - 1) + 1 - pre - post; only the explicit padding modes, which give
    this size, are implemented."""
    _TYPE, _TYPE_LABEL = "DECONVOLUTION", "Deconvolution"

    def _infer(self, shapes, dtypes):
        a = self._attrs
        dtype = dtypes[0]
        if dtype not in _FLOAT_TYPES:
            raise self._fail(f"input type {dtype} is not a floating-point type (dequantize INT8 first)")
        if len(shapes) > 1 and shapes[1] is not None:
            raise NotImplementedError(f"layer {self._name!r} (DECONVOLUTION): a kernel given as input 1 is not "
                                      "implemented by the reference backend")
        if a["padding_mode"] not in (trt.PaddingMode.EXPLICIT_ROUND_DOWN, trt.PaddingMode.EXPLICIT_ROUND_UP):
            raise NotImplementedError(f"padding_mode {a['padding_mode']} is not implemented by the reference backend")
        in_shape, k = shapes[0], a["kernel_size_nd"]
        if len(in_shape) != len(k) + 2:
            raise self._fail(f"a {len(k)}-D kernel needs a rank-{len(k) + 2} input, got shape {tuple(in_shape)}")
        channels, groups, maps = in_shape[1], a["num_groups"], a["num_output_maps"]
        if channels < 0:
            raise self._fail("the channel dimension of the input must be known at build time")
        if channels % groups or maps % groups:
            raise self._fail(f"{channels} input channels and {maps} output maps are not divisible by "
                             f"num_groups={groups}")
        expected = (channels, maps // groups, *k)
        kernel = self._weights.get("kernel")
        if kernel is None or kernel.size != _volume(expected):
            got = 0 if kernel is None else kernel.size
            raise self._fail(f"kernel weights have {got} values but {'x'.join(map(str, expected))} = "
                             f"{_volume(expected)} were expected")
        _check_weight_dtype(self, "kernel", kernel, dtype)
        bias = self._weights.get("bias")
        if bias is not None:
            if bias.size != maps:
                raise self._fail(f"bias has {bias.size} values but num_output_maps is {maps}")
            _check_weight_dtype(self, "bias", bias, dtype)
        spatial = []
        for i, size in enumerate(in_shape[2:]):
            out = (size - 1) * a["stride_nd"][i] + a["dilation_nd"][i] * (k[i] - 1) + 1 \
                - a["pre_padding"][i] - a["post_padding"][i]
            if size >= 0 and out < 1:
                raise self._fail(f"padding {tuple(a['pre_padding'])}/{tuple(a['post_padding'])} leaves no output "
                                 f"for input {tuple(in_shape)}")
            spatial.append(out if size >= 0 else -1)
        return [(Dims((in_shape[0], maps, *spatial)), dtype)]

    def _prepare(self):
        a = self._attrs
        shape = (self._inputs[0].shape[1], a["num_output_maps"] // a["num_groups"], *a["kernel_size_nd"])
        self._kernel_t = torch.from_numpy(self._weights["kernel"].astype(np.float32)).reshape(shape)
        bias = self._weights.get("bias")
        self._bias_t = None if bias is None else torch.from_numpy(bias.astype(np.float32))
        self._deconv = {1: F.conv_transpose1d, 2: F.conv_transpose2d, 3: F.conv_transpose3d}[len(shape) - 2]

    def _run(self, xs):
        a = self._attrs
        pre, post = tuple(a["pre_padding"]), tuple(a["post_padding"])
        y = self._deconv(xs[0], self._kernel_t, self._bias_t, tuple(a["stride_nd"]), 0, 0, a["num_groups"],
                         tuple(a["dilation_nd"]))
        if any(pre) or any(post):  # padding crops the full transposed-convolution output
            crop = tuple(slice(lo, y.shape[2 + i] - hi) for i, (lo, hi) in enumerate(zip(pre, post)))
            y = y[(slice(None), slice(None), *crop)]
        return [y]


class IPoolingLayer(_WindowLayer):
    _TYPE, _TYPE_LABEL = "POOLING", "Pooling"
    type = _setting("type")  # shadows ILayer.type, as TensorRT's IPoolingLayer.type does
    window_size_nd = _setting("window_size_nd", _dims2)
    average_count_excludes_padding = _setting("average_count_excludes_padding", bool)
    blend_factor = _setting("blend_factor", float)

    def _infer(self, shapes, dtypes):
        dtype = _same_float_dtype(self, dtypes)
        window = self._attrs["window_size_nd"]
        spatial = self._spatial_shape(shapes[0], window, (1,) * len(window))
        return [(Dims((*shapes[0][:2], *spatial)), dtype)]

    def _prepare(self):
        a = self._attrs
        if a["type"] not in (trt.PoolingType.MAX, trt.PoolingType.AVERAGE):
            raise NotImplementedError(f"IPoolingLayer type {a['type']} is not implemented by the reference backend")
        self._pad, self._sym_pad = self._torch_padding()
        window = tuple(a["window_size_nd"])
        if self._pad is None and any(p > k // 2 for p, k in zip(self._sym_pad, window)):
            self._pad = tuple(p for p in self._sym_pad[::-1] for _ in range(2))  # torch limits padding to k/2
            self._sym_pad = (0,) * len(window)
        if self._pad is not None and a["type"] == trt.PoolingType.AVERAGE and any(self._pad):
            raise NotImplementedError("average pooling with asymmetric or large padding is not implemented by the "
                                      "reference backend")
        n = len(window)
        if a["type"] == trt.PoolingType.MAX:
            self._pool = {1: F.max_pool1d, 2: F.max_pool2d, 3: F.max_pool3d}[n]
        else:
            self._pool = {1: F.avg_pool1d, 2: F.avg_pool2d, 3: F.avg_pool3d}[n]

    def _run(self, xs):
        a = self._attrs
        x = xs[0]
        self._check_round_up(x.shape[2:], a["window_size_nd"], (1,) * x.dim(), pooling=True)
        if self._pad is not None:
            x = F.pad(x, self._pad, value=-math.inf)  # only MAX gets here with padding
        kwargs = dict(kernel_size=tuple(a["window_size_nd"]), stride=tuple(a["stride_nd"]), padding=self._sym_pad,
                      ceil_mode=a["padding_mode"] == trt.PaddingMode.EXPLICIT_ROUND_UP)
        if a["type"] == trt.PoolingType.AVERAGE:
            kwargs["count_include_pad"] = not a["average_count_excludes_padding"]
        return [self._pool(x, **kwargs)]


class IScaleLayer(ILayer):
    _TYPE, _TYPE_LABEL = "SCALE", "Scale"
    mode = _setting("mode")
    channel_axis = _setting("channel_axis", int)
    shift = _weights_setting("shift")
    scale = _weights_setting("scale")
    power = _weights_setting("power")

    def _infer(self, shapes, dtypes):
        dtype = _same_float_dtype(self, dtypes)
        shape, mode = shapes[0], self._attrs["mode"]
        if mode == trt.ScaleMode.UNIFORM:
            expected = 1
        elif mode == trt.ScaleMode.CHANNEL:
            expected = shape[self._attrs["channel_axis"]]
        else:
            expected = _volume(shape[self._attrs["channel_axis"]:])
        for name, array in self._weights.items():
            if array.size != expected:
                raise self._fail(f"{name} has {array.size} values but mode {mode} on shape {tuple(shape)} needs "
                                 f"{expected}")
            _check_weight_dtype(self, name, array, dtype)
        return [(shape, dtype)]

    def _prepare(self):
        rank = len(self._inputs[0].shape)
        axis = self._attrs["channel_axis"]
        view = {trt.ScaleMode.UNIFORM: (1,) * rank,
                trt.ScaleMode.CHANNEL: tuple(-1 if i == axis else 1 for i in range(rank)),
                trt.ScaleMode.ELEMENTWISE: (1,) * axis + tuple(self._inputs[0].shape[axis:])}[self._attrs["mode"]]
        self._t = {k: torch.from_numpy(v.astype(np.float32)).reshape(view) for k, v in self._weights.items()}

    def _run(self, xs):
        x, t = xs[0], self._t
        if "scale" in t and "shift" in t:
            y = torch.addcmul(t["shift"], x, t["scale"])
        elif "scale" in t:
            y = x * t["scale"]
        elif "shift" in t:
            y = x + t["shift"]
        else:
            y = x
        return [y.pow(t["power"]) if "power" in t else y]


_ACTIVATIONS: dict[str, Callable] = {
    "RELU": lambda x, a, b: torch.relu(x),
    "SIGMOID": lambda x, a, b: torch.sigmoid(x),
    "TANH": lambda x, a, b: torch.tanh(x),
    "LEAKY_RELU": lambda x, a, b: F.leaky_relu(x, a),
    "ELU": lambda x, a, b: F.elu(x, a),
    "SELU": lambda x, a, b: b * torch.where(x > 0, x, a * (torch.exp(x) - 1)),
    "SOFTSIGN": lambda x, a, b: x / (1 + x.abs()),
    "SOFTPLUS": lambda x, a, b: a * F.softplus(b * x),  # alpha*log(exp(beta*x)+1) without overflow in exp
    "CLIP": lambda x, a, b: x.clamp(max=b).clamp(min=a),  # max(alpha, min(beta, x)), also when alpha > beta
    "HARD_SIGMOID": lambda x, a, b: (a * x + b).clamp(0, 1),
    "SCALED_TANH": lambda x, a, b: a * torch.tanh(b * x),
    "THRESHOLDED_RELU": lambda x, a, b: torch.where(x > a, x, torch.zeros_like(x)),
    "GELU_ERF": lambda x, a, b: F.gelu(x),
    "GELU_TANH": lambda x, a, b: F.gelu(x, approximate="tanh"),
}


class IActivationLayer(ILayer):
    _TYPE, _TYPE_LABEL = "ACTIVATION", "Activation"
    type = _setting("type")
    alpha = _setting("alpha", float)
    beta = _setting("beta", float)

    def _infer(self, shapes, dtypes):
        return [(shapes[0], _same_float_dtype(self, dtypes))]

    def _prepare(self):
        self._fn = _ACTIVATIONS[self._attrs["type"].name]

    def _run(self, xs):
        return [self._fn(xs[0], self._attrs["alpha"], self._attrs["beta"])]


_UNARY: dict[str, Callable] = {
    "EXP": torch.exp, "LOG": torch.log, "SQRT": torch.sqrt, "RECIP": torch.reciprocal, "ABS": torch.abs,
    "NEG": torch.neg, "SIN": torch.sin, "COS": torch.cos, "TAN": torch.tan, "SINH": torch.sinh, "COSH": torch.cosh,
    "ASIN": torch.asin, "ACOS": torch.acos, "ATAN": torch.atan, "ASINH": torch.asinh, "ACOSH": torch.acosh,
    "ATANH": torch.atanh, "CEIL": torch.ceil, "FLOOR": torch.floor, "ERF": torch.erf, "NOT": torch.logical_not,
    "SIGN": torch.sign, "ROUND": torch.round, "ISINF": torch.isinf, "ISNAN": torch.isnan,
}


class IUnaryLayer(ILayer):
    _TYPE, _TYPE_LABEL = "UNARY", "Unary"
    op = _setting("op")

    def _infer(self, shapes, dtypes):
        out_dtype = trt.bool if self._attrs["op"].name in ("ISINF", "ISNAN") else dtypes[0]
        return [(shapes[0], out_dtype)]

    def _run(self, xs):
        return [_UNARY[self._attrs["op"].name](xs[0])]


_ELEMENTWISE: dict[str, Callable] = {
    "SUM": torch.add, "PROD": torch.mul, "MAX": torch.maximum, "MIN": torch.minimum, "SUB": torch.sub,
    "DIV": torch.div, "POW": torch.pow, "FLOOR_DIV": lambda a, b: torch.div(a, b, rounding_mode="floor"),
    "AND": torch.logical_and, "OR": torch.logical_or, "XOR": torch.logical_xor, "EQUAL": torch.eq,
    "GREATER": torch.gt, "LESS": torch.lt,
}
_COMPARISONS = ("EQUAL", "GREATER", "LESS")


def _broadcast(layer: ILayer, a: Dims, b: Dims) -> Dims:
    """TensorRT broadcasting: equal ranks; each dimension equal or 1 on one side."""
    if len(a) != len(b):
        raise layer._fail(f"inputs have ranks {len(a)} and {len(b)}; TensorRT does not broadcast across ranks "
                          f"(reshape one of {tuple(a)}, {tuple(b)} first)")
    out = []
    for x, y in zip(a, b):
        if x == y or y == 1:
            out.append(x)
        elif x == 1:
            out.append(y)
        elif x == -1 or y == -1:
            out.append(max(x, y))
        else:
            raise layer._fail(f"shapes {tuple(a)} and {tuple(b)} cannot be broadcast")
    return Dims(out)


class IElementWiseLayer(ILayer):
    _TYPE, _TYPE_LABEL = "ELEMENTWISE", "ElementWise"
    op = _setting("op")

    def _infer(self, shapes, dtypes):
        if dtypes[0] != dtypes[1]:
            raise self._fail(f"inputs have types {dtypes[0]} and {dtypes[1]}; strongly typed networks need equal "
                             f"types (add a cast)")
        shape = _broadcast(self, shapes[0], shapes[1])
        return [(shape, trt.bool if self._attrs["op"].name in _COMPARISONS else dtypes[0])]

    def _prepare(self):
        self._fn = _ELEMENTWISE[self._attrs["op"].name]

    def _run(self, xs):
        return [self._fn(xs[0], xs[1])]


class IParametricReLULayer(ILayer):
    """y = x where x >= 0, else slopes * x. The slopes tensor has the input's rank, each dimension equal to the
    input's or 1 (it broadcasts into the input, never the other way), and the input's type."""
    _TYPE, _TYPE_LABEL = "PARAMETRIC_RELU", "ParametricReLU"

    def _infer(self, shapes, dtypes):
        dtype = _same_float_dtype(self, dtypes)
        if dtypes[1] != dtype:
            raise self._fail(f"slopes have type {dtypes[1]} but the input is {dtype}")
        x, slopes = shapes
        if len(slopes) != len(x) or any(s not in (1, d) for s, d in zip(slopes, x) if d >= 0):
            raise self._fail(f"slopes of shape {tuple(slopes)} do not broadcast into the input {tuple(x)} (each "
                             f"dimension must equal the input's or be 1)")
        return [(x, dtype)]

    def _run(self, xs):
        return [torch.where(xs[0] >= 0, xs[0], xs[0] * xs[1])]


class ISelectLayer(ILayer):
    _TYPE, _TYPE_LABEL = "SELECT", "Select"

    def _infer(self, shapes, dtypes):
        if dtypes[0] != trt.bool:
            raise self._fail(f"condition must be bool, got {dtypes[0]}")
        if dtypes[1] != dtypes[2]:
            raise self._fail(f"then/else types differ: {dtypes[1]} vs {dtypes[2]}")
        return [(_broadcast(self, _broadcast(self, shapes[0], shapes[1]), shapes[2]), dtypes[1])]

    def _run(self, xs):
        return [torch.where(xs[0], xs[1], xs[2])]


class IConcatenationLayer(ILayer):
    _TYPE, _TYPE_LABEL = "CONCATENATION", "Concatenation"
    axis = _setting("axis", int)

    def _infer(self, shapes, dtypes):
        if any(d != dtypes[0] for d in dtypes):
            raise self._fail(f"inputs must share one type, got {dtypes}")
        axis, rank = self._attrs["axis"], len(shapes[0])
        if not 0 <= axis < rank:
            raise self._fail(f"axis {axis} is out of range for rank {rank}")
        out = list(shapes[0])
        for s in shapes[1:]:
            if len(s) != rank or any(s[i] != out[i] for i in range(rank) if i != axis and s[i] >= 0 and out[i] >= 0):
                raise self._fail(f"input shapes {[tuple(x) for x in shapes]} differ outside axis {axis}")
            out[axis] = -1 if out[axis] < 0 or s[axis] < 0 else out[axis] + s[axis]
        return [(Dims(out), dtypes[0])]

    def _run(self, xs):
        return [torch.cat(xs, self._attrs["axis"])]


class IResizeLayer(ILayer):
    _TYPE, _TYPE_LABEL = "RESIZE", "Resize"
    resize_mode = _setting("resize_mode")
    coordinate_transformation = _setting("coordinate_transformation")
    selector_for_single_pixel = _setting("selector_for_single_pixel")
    nearest_rounding = _setting("nearest_rounding")
    exclude_outside = _setting("exclude_outside", bool)
    cubic_coeff = _setting("cubic_coeff", float)

    @property
    def shape(self) -> Dims:
        return self._attrs.get("shape")

    @shape.setter
    def shape(self, value):
        self._attrs["shape"], self._attrs["scales"] = Dims(value), None
        self._network._touch(self)

    @property
    def scales(self):
        return self._attrs.get("scales")

    @scales.setter
    def scales(self, value):
        self._attrs["scales"], self._attrs["shape"] = tuple(float(s) for s in value), None
        self._network._touch(self)

    def _infer(self, shapes, dtypes):
        in_shape, a = shapes[0], self._attrs
        if a.get("shape") is not None:
            out = a["shape"]
        elif a.get("scales") is not None:
            if len(a["scales"]) != len(in_shape):
                raise self._fail(f"{len(a['scales'])} scales for a rank-{len(in_shape)} input")
            out = Dims(-1 if d < 0 else int(math.floor(d * s)) for d, s in zip(in_shape, a["scales"]))
        else:
            raise self._fail("set either shape or scales")
        if len(out) != len(in_shape) or any(o != i for o, i in zip(out[:2], in_shape[:2]) if i >= 0):
            raise self._fail(f"the reference backend resizes spatial dimensions only: {tuple(in_shape)} -> "
                             f"{tuple(out)}")
        return [(out, _same_float_dtype(self, dtypes))]

    def _prepare(self):
        a = self._attrs
        mode, transform = a["resize_mode"], a["coordinate_transformation"]
        if mode == trt.InterpolationMode.NEAREST:
            if transform != trt.ResizeCoordinateTransformation.ASYMMETRIC or \
                    a["nearest_rounding"] != trt.ResizeRoundMode.FLOOR:
                raise NotImplementedError("nearest resize is implemented for ASYMMETRIC coordinates with FLOOR "
                                          "rounding only (TensorRT's defaults)")
            self._kwargs = dict(mode="nearest")
        elif mode == trt.InterpolationMode.LINEAR and transform in (
                trt.ResizeCoordinateTransformation.HALF_PIXEL, trt.ResizeCoordinateTransformation.ALIGN_CORNERS):
            rank = len(self._inputs[0].shape)
            self._kwargs = dict(mode={3: "linear", 4: "bilinear", 5: "trilinear"}[rank],
                                align_corners=transform == trt.ResizeCoordinateTransformation.ALIGN_CORNERS)
        else:
            raise NotImplementedError(f"resize mode {mode} with {transform} is not implemented by the reference "
                                      f"backend")

    def _run(self, xs):
        x, a = xs[0], self._attrs
        if a.get("scales") is not None:
            return [F.interpolate(x, scale_factor=a["scales"][2:], recompute_scale_factor=False, **self._kwargs)]
        return [F.interpolate(x, size=tuple(a["shape"][2:]), **self._kwargs)]


class IShuffleLayer(ILayer):
    _TYPE, _TYPE_LABEL = "SHUFFLE", "Shuffle"
    first_transpose = _setting("first_transpose", tuple)
    second_transpose = _setting("second_transpose", tuple)
    zero_is_placeholder = _setting("zero_is_placeholder", bool)

    @property
    def reshape_dims(self) -> Dims:
        return self._attrs.get("reshape_dims")

    @reshape_dims.setter
    def reshape_dims(self, value):
        self._attrs["reshape_dims"] = Dims(value)
        self._network._touch(self)

    def _perm(self, key: str, rank: int) -> tuple[int, ...]:
        perm = tuple(self._attrs[key])[:rank]
        if sorted(perm) != list(range(rank)):
            raise self._fail(f"{key} {perm} is not a permutation of {rank} axes")
        return perm

    def _resolve(self, shape: Sequence[int], known_only: bool) -> Dims:
        """Apply reshape_dims to `shape`: 0 copies the input dimension, -1 takes the remaining volume."""
        dims = self._attrs["reshape_dims"]
        out = [shape[i] if d == 0 and self._attrs["zero_is_placeholder"] else d for i, d in enumerate(dims)]
        if out.count(-1) - sum(1 for i, d in enumerate(dims) if d == 0 and shape[i] == -1) > 1:
            raise self._fail(f"reshape_dims {tuple(dims)} has more than one -1")
        copied_dynamic = [i for i, d in enumerate(dims) if d == 0 and shape[i] < 0]
        free = [i for i, d in enumerate(dims) if d == -1]
        if free:
            rest = [d for i, d in enumerate(shape) if i not in copied_dynamic]
            if any(d < 0 for d in rest):
                out[free[0]] = -1  # only known at run time
            else:
                fixed = _volume([d for i, d in enumerate(out) if i not in free and i not in copied_dynamic])
                if _volume(rest) % max(fixed, 1):
                    raise self._fail(f"cannot reshape {tuple(shape)} to {tuple(dims)}")
                out[free[0]] = _volume(rest) // max(fixed, 1)
        elif known_only and all(d >= 0 for d in shape) and _volume(shape) != _volume(out):
            raise self._fail(f"cannot reshape {tuple(shape)} ({_volume(shape)} values) to {tuple(out)}")
        return Dims(out)

    def _infer(self, shapes, dtypes):
        shape = shapes[0]
        perm1 = self._perm("first_transpose", len(shape))
        shape = Dims(shape[p] for p in perm1)
        if self._attrs.get("reshape_dims") is not None:
            shape = self._resolve(shape, known_only=True)
        perm2 = self._perm("second_transpose", len(shape))
        return [(Dims(shape[p] for p in perm2), dtypes[0])]

    def _run(self, xs):
        x = xs[0]
        perm1 = self._perm("first_transpose", x.dim())
        if perm1 != tuple(range(x.dim())):
            x = x.permute(perm1)
        if self._attrs.get("reshape_dims") is not None:
            x = x.reshape(tuple(self._resolve(x.shape, known_only=False)))
        perm2 = self._perm("second_transpose", x.dim())
        return [x.permute(perm2) if perm2 != tuple(range(x.dim())) else x]


class ISliceLayer(ILayer):
    _TYPE, _TYPE_LABEL = "SLICE", "Slice"
    start = _setting("start", _dims2)
    shape = _setting("shape", _dims2)
    stride = _setting("stride", _dims2)
    mode = _setting("mode")

    def _infer(self, shapes, dtypes):
        a, in_shape = self._attrs, shapes[0]
        if a["mode"] != trt.SampleMode.STRICT_BOUNDS:
            raise NotImplementedError(f"slice mode {a['mode']} is not implemented by the reference backend")
        if not len(a["start"]) == len(a["shape"]) == len(a["stride"]) == len(in_shape):
            raise self._fail(f"start/shape/stride ranks {len(a['start'])}/{len(a['shape'])}/{len(a['stride'])} "
                             f"differ from the input rank {len(in_shape)}")
        for axis, (s, n, st, d) in enumerate(zip(a["start"], a["shape"], a["stride"], in_shape)):
            last = s + (n - 1) * st
            if d >= 0 and n > 0 and not (0 <= s < d and 0 <= last < d):
                raise self._fail(f"axis {axis}: elements {s}..{last} are outside 0..{d - 1}")
        return [(a["shape"], dtypes[0])]

    def _run(self, xs):
        x, a = xs[0], self._attrs
        for axis, (s, n, st) in enumerate(zip(a["start"], a["shape"], a["stride"])):
            if st > 0:
                x = x.narrow(axis, s, (n - 1) * st + 1) if n > 0 else x.narrow(axis, s, 0)
                x = x[(slice(None),) * axis + (slice(None, None, st),)] if st != 1 else x
            else:
                x = x.index_select(axis, torch.arange(n) * st + s)
        return [x]


class IMatrixMultiplyLayer(ILayer):
    _TYPE, _TYPE_LABEL = "MATRIX_MULTIPLY", "MatrixMultiply"
    op0 = _setting("op0")
    op1 = _setting("op1")

    def _operand(self, shape: Dims, op) -> tuple[Dims, tuple[int, int] | None]:
        """(batch dims, matrix dims or None for a vector)."""
        if op == trt.MatrixOperation.VECTOR:
            return Dims(shape[:-1]), None
        if len(shape) < 2:
            raise self._fail(f"a matrix operand needs rank >= 2, got {tuple(shape)}")
        rows, cols = shape[-2], shape[-1]
        return Dims(shape[:-2]), (cols, rows) if op == trt.MatrixOperation.TRANSPOSE else (rows, cols)

    def _infer(self, shapes, dtypes):
        if dtypes[0] != dtypes[1]:
            raise self._fail(f"operands have types {dtypes[0]} and {dtypes[1]}")
        b0, m0 = self._operand(shapes[0], self._attrs["op0"])
        b1, m1 = self._operand(shapes[1], self._attrs["op1"])
        k0 = shapes[0][-1] if m0 is None else m0[1]
        k1 = shapes[1][-1] if m1 is None else m1[0]
        if k0 >= 0 and k1 >= 0 and k0 != k1:
            raise self._fail(f"inner dimensions differ: {tuple(shapes[0])} ({self._attrs['op0'].name}) x "
                             f"{tuple(shapes[1])} ({self._attrs['op1'].name})")
        batch = _broadcast(self, b0, b1)
        tail = ([] if m0 is None else [m0[0]]) + ([] if m1 is None else [m1[1]])
        return [(Dims((*batch, *tail)), dtypes[0])]

    def _run(self, xs):
        a, b = xs
        op0, op1 = self._attrs["op0"], self._attrs["op1"]
        if op0 == trt.MatrixOperation.TRANSPOSE:
            a = a.transpose(-1, -2)
        if op1 == trt.MatrixOperation.TRANSPOSE:
            b = b.transpose(-1, -2)
        if op0 == trt.MatrixOperation.VECTOR:
            a = a.unsqueeze(-2)
        if op1 == trt.MatrixOperation.VECTOR:
            b = b.unsqueeze(-1)
        y = torch.matmul(a, b)
        if op0 == trt.MatrixOperation.VECTOR:
            y = y.squeeze(-2)
        if op1 == trt.MatrixOperation.VECTOR:
            y = y.squeeze(-1)
        return [y]


class IConstantLayer(ILayer):
    _TYPE, _TYPE_LABEL = "CONSTANT", "Constant"
    weights = _weights_setting("weights")

    @property
    def shape(self) -> Dims:
        return self._attrs["shape"]

    @shape.setter
    def shape(self, value):
        self._attrs["shape"] = Dims(value)
        self._network._touch(self)

    def _infer(self, shapes, dtypes):
        array, shape = self._weights.get("weights"), self._attrs["shape"]
        if array is None or array.size != _volume(shape):
            raise self._fail(f"{0 if array is None else array.size} weights for shape {tuple(shape)} "
                             f"({_volume(shape)} values)")
        return [(shape, trt_dtype(array.dtype))]

    def _prepare(self):
        self._t = torch.from_numpy(self._weights["weights"].copy()).reshape(tuple(self._attrs["shape"]))

    def _run(self, xs):
        return [self._t]


class IReduceLayer(ILayer):
    _TYPE, _TYPE_LABEL = "REDUCE", "Reduce"
    op = _setting("op")
    axes = _setting("axes", int)
    keep_dims = _setting("keep_dims", bool)

    def _infer(self, shapes, dtypes):
        shape = shapes[0]
        axes = _axes_from_mask(self._attrs["axes"], len(shape))
        if self._attrs["keep_dims"]:
            out = Dims(1 if i in axes else d for i, d in enumerate(shape))
        else:
            out = Dims(d for i, d in enumerate(shape) if i not in axes)
        return [(out, dtypes[0])]

    def _run(self, xs):
        x, a = xs[0], self._attrs
        axes = tuple(_axes_from_mask(a["axes"], x.dim()))
        keep, op = a["keep_dims"], a["op"].name
        if op == "SUM":
            return [x.sum(axes, keepdim=keep)]
        if op == "AVG":
            return [x.mean(axes, keepdim=keep)]
        if op in ("MAX", "MIN"):
            return [x.amax(axes, keepdim=keep) if op == "MAX" else x.amin(axes, keepdim=keep)]
        if op == "PROD":
            for axis in sorted(axes, reverse=True):
                x = x.prod(axis, keepdim=keep)
            return [x]
        raise NotImplementedError(f"reduce op {op} is not implemented by the reference backend")


class ISoftMaxLayer(ILayer):
    _TYPE, _TYPE_LABEL = "SOFTMAX", "SoftMax"
    axes = _setting("axes", int)

    def _axis(self, rank: int) -> int:
        axes = _axes_from_mask(self._attrs["axes"] if self._attrs.get("axes") is not None
                               else 1 << _default_channel_axis(rank), rank)
        if len(axes) != 1:
            raise self._fail(f"softmax needs exactly one axis, got bitmask {bin(self._attrs['axes'])}")
        return axes[0]

    def _infer(self, shapes, dtypes):
        self._axis(len(shapes[0]))
        return [(shapes[0], _same_float_dtype(self, dtypes))]

    def _run(self, xs):
        return [torch.softmax(xs[0], self._axis(xs[0].dim()))]


class ITopKLayer(ILayer):
    _TYPE, _TYPE_LABEL = "TOPK", "TopK"
    op = _setting("op")
    k = _setting("k", int)
    axes = _setting("axes", int)
    indices_type = _setting("indices_type")

    def _infer(self, shapes, dtypes):
        axes = _axes_from_mask(self._attrs["axes"], len(shapes[0]))
        if len(axes) != 1:
            raise self._fail(f"topk needs exactly one axis, got bitmask {bin(self._attrs['axes'])}")
        if not 0 < self._attrs["k"] <= shapes[0][axes[0]] and shapes[0][axes[0]] >= 0:
            raise self._fail(f"k={self._attrs['k']} must be in 1..{shapes[0][axes[0]]}, the size of axis {axes[0]} "
                             f"of {tuple(shapes[0])}")
        out = Dims(self._attrs["k"] if i == axes[0] else d for i, d in enumerate(shapes[0]))
        return [(out, dtypes[0]), (out, self._attrs["indices_type"])]

    def _run(self, xs):
        axis = _axes_from_mask(self._attrs["axes"], xs[0].dim())[0]
        values, indices = torch.topk(xs[0], self._attrs["k"], axis, largest=self._attrs["op"] == trt.TopKOperation.MAX)
        return [values, indices]


class IGatherLayer(ILayer):
    _TYPE, _TYPE_LABEL = "GATHER", "Gather"
    axis = _setting("axis", int)
    mode = _setting("mode")
    num_elementwise_dims = _setting("num_elementwise_dims", int)

    def _infer(self, shapes, dtypes):
        batched = self._attrs["num_elementwise_dims"]
        if self._attrs["mode"] != trt.GatherMode.DEFAULT or batched not in (0, 1):
            raise NotImplementedError("only DEFAULT gather with 0 or 1 elementwise dims is implemented by the "
                                      "reference backend")
        if dtypes[1] not in (trt.int32, trt.int64):
            raise self._fail(f"indices must be int32 or int64, got {dtypes[1]}")
        data, indices, axis = shapes[0], shapes[1], self._attrs["axis"]
        if batched and (axis < 1 or len(indices) < 1):
            raise self._fail(f"with one elementwise dim the axis must be >= 1 and the indices of rank >= 1, got axis "
                             f"{axis} and indices {tuple(indices)}")
        # TensorRT: [data[:axis], indices[num_elementwise_dims:], data[axis + 1:]]; the elementwise dim is data's 0
        return [(Dims((*data[:axis], *indices[batched:], *data[axis + 1:])), dtypes[0])]

    def _run(self, xs):
        data, indices = xs
        axis = self._attrs["axis"]
        if self._attrs["num_elementwise_dims"]:  # item b of the batch gathers from data[b] with indices[b]
            return [torch.stack([self._gather(d, i, axis - 1) for d, i in zip(data, indices)])]
        return [self._gather(data, indices, axis)]

    @staticmethod
    def _gather(data, indices, axis):
        flat = data.index_select(axis, indices.reshape(-1).long())
        return flat.reshape(*data.shape[:axis], *indices.shape, *data.shape[axis + 1:])


class INormalizationLayer(ILayer):
    """TensorRT's normalization: Y = (X - mean(X, axes)) / sqrt(var(X, axes) + epsilon) * S + B, with the biased
    variance, S and B of the input's rank broadcast against it (LayerNorm over the last axis: S, B of shape
    [1, ..., 1, C]). epsilon defaults to 1e-5. Group normalization (num_groups > 1) is not implemented here."""

    _TYPE, _TYPE_LABEL = "NORMALIZATION", "Normalization"
    epsilon = _setting("epsilon", float)
    axes = _setting("axes", int)
    num_groups = _setting("num_groups", int)

    @property
    def is_v2(self) -> bool:
        return False

    def _infer(self, shapes, dtypes):
        dtype = _same_float_dtype(self, dtypes)
        shape = shapes[0]
        _axes_from_mask(self._attrs["axes"], len(shape))
        if self._attrs["num_groups"] != 1:
            raise NotImplementedError("normalization with num_groups > 1 is not implemented by the reference backend")
        for what, s in (("scale", shapes[1]), ("bias", shapes[2])):
            if len(s) != len(shape):
                raise self._fail(f"{what} has shape {tuple(s)}; it needs the input's rank {len(shape)}")
            _broadcast(self, shape, s)
        return [(shape, dtype)]

    def _run(self, xs):
        x, scale, bias = xs
        axes = tuple(_axes_from_mask(self._attrs["axes"], x.dim()))
        last = x.shape[-1]
        per_feature = scale.numel() == bias.numel() == last and scale.shape[-1] == bias.shape[-1] == last
        if axes == (x.dim() - 1,) and per_feature:
            # LayerNorm over the last axis: the same formula in one fused kernel
            return [F.layer_norm(x, (last,), scale.reshape(-1), bias.reshape(-1), self._attrs["epsilon"])]
        var, mean = torch.var_mean(x, axes, correction=0, keepdim=True)
        return [(x - mean) * torch.rsqrt(var + self._attrs["epsilon"]) * scale + bias]


class IPaddingLayer(ILayer):
    """Zeros added before and after the two innermost axes (a negative amount trims), as TensorRT's padding layer:
    pre_padding_nd and post_padding_nd are (h, w) pairs, every other axis passes through."""

    _TYPE, _TYPE_LABEL = "PADDING", "Padding"
    pre_padding_nd = _setting("pre_padding_nd", _dims2)
    post_padding_nd = _setting("post_padding_nd", _dims2)

    def _infer(self, shapes, dtypes):
        pre, post, shape = self._attrs["pre_padding_nd"], self._attrs["post_padding_nd"], shapes[0]
        if len(shape) < 4 or len(pre) != 2 or len(post) != 2:
            raise self._fail(f"pads the two innermost axes of a rank >= 4 input with (h, w) pairs; got rank "
                             f"{len(shape)}, pre {tuple(pre)}, post {tuple(post)}")
        out = list(shape)
        for i, (a, b) in enumerate(zip(pre, post)):
            axis = len(shape) - 2 + i
            if shape[axis] >= 0:
                out[axis] = shape[axis] + a + b
                if out[axis] <= 0:
                    raise self._fail(f"axis {axis} of size {shape[axis]} padded by ({a}, {b}) leaves nothing")
        return [(Dims(out), dtypes[0])]

    def _run(self, xs):
        (top, left), (bottom, right) = self._attrs["pre_padding_nd"], self._attrs["post_padding_nd"]
        return [torch.nn.functional.pad(xs[0], (left, right, top, bottom))]  # negative amounts trim, as TensorRT's


class ICastLayer(ILayer):
    _TYPE, _TYPE_LABEL = "CAST", "Cast"
    to_type = _setting("to_type")

    def _infer(self, shapes, dtypes):
        return [(shapes[0], self._attrs["to_type"])]

    def _run(self, xs):
        return [xs[0]]  # the executor stores every output in its declared type


class IIdentityLayer(ILayer):
    _TYPE, _TYPE_LABEL = "IDENTITY", "Identity"

    def _infer(self, shapes, dtypes):
        return [(shapes[0], dtypes[0])]

    def _run(self, xs):
        return [xs[0]]


class _QuantLayer(ILayer):
    """What quantize and dequantize share: a constant FP32 scale, per tensor or per channel along `axis`."""

    axis = _setting("axis", int)
    to_type = _setting("to_type")

    def _check_scale(self, shapes, dtypes) -> None:
        scale_shape, rank = shapes[1], len(shapes[0])
        if self._inputs[1]._layer is None or not isinstance(self._inputs[1]._layer, IConstantLayer):
            raise self._fail("the scale must be a build-time constant (add_constant)")
        if _volume(scale_shape) != 1:
            axis = self._attrs["axis"]
            if not 0 <= axis < rank or len(scale_shape) != 1 or scale_shape[0] != shapes[0][axis]:
                raise self._fail(f"a per-channel scale of shape {tuple(scale_shape)} needs axis set to a dimension "
                                 f"of that size in {tuple(shapes[0])} (axis={axis})")
        if dtypes[1] != trt.float32:
            raise self._fail(f"use FP32 scales (got {dtypes[1]})")
        if not np.all(self._inputs[1]._layer._weights["weights"] > 0):
            raise self._fail("every scale must be > 0")

    def _scale_axis(self, x: torch.Tensor, scale: torch.Tensor) -> int | None:
        return None if scale.numel() == 1 else self._attrs["axis"]


class IQuantizeLayer(_QuantLayer):
    _TYPE, _TYPE_LABEL = "QUANTIZE", "Quantize"

    def _infer(self, shapes, dtypes):
        self._check_scale(shapes, dtypes)
        if self._attrs["to_type"] != trt.int8:
            raise NotImplementedError(f"quantize to {self._attrs['to_type']} is not implemented by the reference "
                                      f"backend (INT8 only)")
        if dtypes[0] not in _FLOAT_TYPES:
            raise self._fail(f"input must be floating point, got {dtypes[0]}")
        return [(shapes[0], trt.int8)]

    def _run(self, xs):
        from ..calibration import quantize
        return [quantize(xs[0], xs[1].reshape(-1), axis=self._scale_axis(xs[0], xs[1]))]


class IDequantizeLayer(_QuantLayer):
    _TYPE, _TYPE_LABEL = "DEQUANTIZE", "Dequantize"

    def _infer(self, shapes, dtypes):
        self._check_scale(shapes, dtypes)
        if dtypes[0] != trt.int8:
            raise self._fail(f"input must be INT8, got {dtypes[0]}")
        if self._attrs["to_type"] not in _FLOAT_TYPES:
            raise self._fail(f"output type must be floating point, got {self._attrs['to_type']}")
        return [(shapes[0], self._attrs["to_type"])]

    def _run(self, xs):
        from ..calibration import dequantize
        return [dequantize(xs[0], xs[1].reshape(-1), axis=self._scale_axis(xs[0], xs[1]))]


class IPluginV3Layer(ILayer):
    _TYPE, _TYPE_LABEL = "PLUGIN_V3", "PluginV3"

    def _definition(self) -> ref_plugin.PluginDefinition:
        return ref_plugin.lookup(self._attrs["op_id"], self._attrs.get("module"))

    def _plugin_attrs(self) -> dict:
        attrs = dict(self._attrs.get("plugin_attrs", {}))
        attrs.update(self._weights)  # array attributes travel as weights
        return attrs

    def _infer(self, shapes, dtypes):
        specs = [ref_plugin.TensorSpec(tuple(s), d) for s, d in zip(shapes, dtypes)]
        try:
            outs = self._definition().shapes(specs, **self._plugin_attrs())
        except ValueError as e:
            raise self._fail(str(e)) from None
        return [(Dims(o.shape), o.dtype) for o in outs]

    def _prepare(self):
        definition = self._definition()
        self._forward = definition.forward
        self._cuda_forward = definition.cuda_forward  # the plugin's GPU kernel, run on CUDA tensors
        self._call_attrs = self._plugin_attrs()

    def _run(self, xs):
        cuda = self._cuda_forward is not None and xs and xs[0].is_cuda
        out = (ref_plugin.resolve(self._cuda_forward) if cuda else self._forward)(*xs, **self._call_attrs)
        return list(out) if isinstance(out, (tuple, list)) else [out]


LAYER_CLASSES = {cls.__name__: cls for cls in (
    IConvolutionLayer, IDeconvolutionLayer, IPoolingLayer, IScaleLayer, IActivationLayer, IUnaryLayer,
    IElementWiseLayer, ISelectLayer, IConcatenationLayer, IResizeLayer, IParametricReLULayer, IShuffleLayer,
    ISliceLayer, IMatrixMultiplyLayer, IConstantLayer, IReduceLayer, ISoftMaxLayer, ITopKLayer, IGatherLayer,
    ICastLayer, IIdentityLayer, IQuantizeLayer, IDequantizeLayer, IPluginV3Layer, INormalizationLayer,
    IPaddingLayer)}


# ----------------------------------------------------------------------------------------------------------------
# the network


class INetworkDefinition:
    _zoo_recorder = True  # one of the zoo's networks, not TensorRT's (zoo.trt_api.is_tensorrt_network)

    def __init__(self, flags: int = 0):
        self._flags = flags
        self._layers: list[ILayer] = []
        self._inputs: list[ITensor] = []
        self._outputs: list[ITensor] = []
        self._valid_upto = 0  # layers[:valid_upto] have up-to-date shapes and types
        self.name = "network"

    # --- shape and type inference
    def _touch(self, layer: ILayer | None) -> None:
        self._valid_upto = 0 if layer is None else min(self._valid_upto, layer._index)

    def _reorder(self) -> None:
        """Keep layers topologically sorted after set_input rewired one to a later tensor."""
        placed: set[int] = set()
        order: list[ILayer] = []

        def visit(layer: ILayer, path: tuple = ()):
            if id(layer) in placed:
                return
            if id(layer) in path:
                raise NetworkError(f"layer {layer.name!r} is part of a cycle")
            for t in layer._inputs:
                if t is not None and t._layer is not None:
                    visit(t._layer, path + (id(layer),))
            placed.add(id(layer))
            order.append(layer)

        for layer in list(self._layers):
            visit(layer)
        for i, layer in enumerate(order):
            layer._index = i
        self._layers = order
        self._valid_upto = 0

    def _meta(self, tensor: ITensor) -> tuple[Dims, Any]:
        if tensor._layer is None:
            return tensor._input_shape, tensor._input_dtype
        target = tensor._layer._index
        while self._valid_upto <= target:
            layer = self._layers[self._valid_upto]
            ins = [self._meta(t) if t is not None else (None, None) for t in layer._inputs]
            layer._meta_cache = layer._infer([s for s, _ in ins], [d for _, d in ins])
            self._valid_upto += 1
        return tensor._layer._meta_cache[tensor._output_index]

    def _add(self, cls: type[ILayer], inputs: Sequence[ITensor | None], num_outputs: int = 1, **attrs) -> ILayer:
        for t in inputs:
            if t is not None and (not isinstance(t, ITensor) or t._network is not self):
                raise TypeError(f"{cls.__name__}: inputs must be tensors of this network, got {t!r}")
        weights = {k: _weights_array(attrs.pop(k)) for k in list(attrs) if k.startswith("w_")}
        layer = cls(self, inputs, num_outputs, attrs, {k[2:]: v for k, v in weights.items()})
        self._layers.append(layer)
        return layer

    # --- TensorRT's INetworkDefinition API
    @property
    def num_layers(self) -> int:
        return len(self._layers)

    @property
    def num_inputs(self) -> int:
        return len(self._inputs)

    @property
    def num_outputs(self) -> int:
        return len(self._outputs)

    @property
    def flags(self) -> int:
        return self._flags

    def get_layer(self, index: int) -> ILayer:
        return self._layers[index]

    def get_input(self, index: int) -> ITensor:
        return self._inputs[index]

    def get_output(self, index: int) -> ITensor:
        return self._outputs[index]

    def get_flag(self, flag) -> bool:
        return bool(self._flags >> int(flag.value) & 1)

    def add_input(self, name: str, dtype, shape) -> ITensor:
        if any(t.name == name for t in self._inputs):
            raise NetworkError(f"the network already has an input named {name!r}")
        tensor = ITensor(self, name)
        tensor._input_shape, tensor._input_dtype = Dims(shape), dtype
        self._inputs.append(tensor)
        return tensor

    def mark_output(self, tensor: ITensor) -> None:
        if not tensor.is_network_output:
            self._outputs.append(tensor)

    def unmark_output(self, tensor: ITensor) -> None:
        self._outputs = [t for t in self._outputs if t is not tensor]

    def add_convolution_nd(self, input, num_output_maps, kernel_shape, kernel, bias=None) -> IConvolutionLayer:
        layer = self._add(IConvolutionLayer, [input], num_output_maps=int(num_output_maps),
                          kernel_size_nd=Dims(kernel_shape), dilation_nd=Dims((1,) * len(kernel_shape)),
                          num_groups=1, w_kernel=kernel, w_bias=bias)
        layer._window_defaults(kernel_shape)
        return layer

    def add_deconvolution_nd(self, input, num_output_maps, kernel_shape, kernel, bias=None) -> IDeconvolutionLayer:
        layer = self._add(IDeconvolutionLayer, [input], num_output_maps=int(num_output_maps),
                          kernel_size_nd=Dims(kernel_shape), dilation_nd=Dims((1,) * len(kernel_shape)),
                          num_groups=1, w_kernel=kernel, w_bias=bias)
        layer._window_defaults(kernel_shape)
        return layer

    def add_pooling_nd(self, input, type, window_size) -> IPoolingLayer:  # noqa: A002 (TensorRT's parameter name)
        layer = self._add(IPoolingLayer, [input], type=type, window_size_nd=Dims(window_size),
                          average_count_excludes_padding=True, blend_factor=0.0)
        layer._window_defaults(window_size)
        return layer

    def add_scale(self, input, mode, shift=None, scale=None, power=None) -> IScaleLayer:
        rank = len(input.shape)
        return self._add(IScaleLayer, [input], mode=mode, channel_axis=_default_channel_axis(rank),
                         w_shift=shift, w_scale=scale, w_power=power)

    def add_activation(self, input, type) -> IActivationLayer:  # noqa: A002
        return self._add(IActivationLayer, [input], type=type, alpha=0.0, beta=0.0)

    def add_unary(self, input, op) -> IUnaryLayer:
        return self._add(IUnaryLayer, [input], op=op)

    def add_elementwise(self, input1, input2, op) -> IElementWiseLayer:
        return self._add(IElementWiseLayer, [input1, input2], op=op)

    def add_parametric_relu(self, input, slopes) -> IParametricReLULayer:  # noqa: A002
        return self._add(IParametricReLULayer, [input, slopes])

    def add_select(self, condition, then_input, else_input) -> ISelectLayer:
        return self._add(ISelectLayer, [condition, then_input, else_input])

    def add_concatenation(self, inputs) -> IConcatenationLayer:
        inputs = list(inputs)
        if not inputs:
            raise NetworkError("add_concatenation needs at least one input")
        return self._add(IConcatenationLayer, inputs, axis=_default_channel_axis(len(inputs[0].shape)))

    def add_resize(self, input) -> IResizeLayer:
        return self._add(IResizeLayer, [input], shape=None, scales=None, resize_mode=trt.InterpolationMode.NEAREST,
                         coordinate_transformation=trt.ResizeCoordinateTransformation.ASYMMETRIC,
                         selector_for_single_pixel=trt.ResizeSelector.FORMULA,
                         nearest_rounding=trt.ResizeRoundMode.FLOOR, exclude_outside=False, cubic_coeff=-0.75)

    def add_shuffle(self, input) -> IShuffleLayer:
        identity = tuple(range(Dims.MAX_DIMS))
        return self._add(IShuffleLayer, [input], first_transpose=identity, second_transpose=identity,
                         reshape_dims=None, zero_is_placeholder=True)

    def add_slice(self, input, start, shape, stride) -> ISliceLayer:
        return self._add(ISliceLayer, [input], start=Dims(start), shape=Dims(shape), stride=Dims(stride),
                         mode=trt.SampleMode.STRICT_BOUNDS)

    def add_matrix_multiply(self, input0, op0, input1, op1) -> IMatrixMultiplyLayer:
        return self._add(IMatrixMultiplyLayer, [input0, input1], op0=op0, op1=op1)

    def add_constant(self, shape, weights) -> IConstantLayer:
        return self._add(IConstantLayer, [], shape=Dims(shape), w_weights=weights)

    def add_reduce(self, input, op, axes, keep_dims) -> IReduceLayer:
        return self._add(IReduceLayer, [input], op=op, axes=int(axes), keep_dims=bool(keep_dims))

    def add_softmax(self, input) -> ISoftMaxLayer:
        return self._add(ISoftMaxLayer, [input], axes=1 << _default_channel_axis(len(input.shape)))

    def add_topk(self, input, op, k, axes, indices_type=None) -> ITopKLayer:
        return self._add(ITopKLayer, [input], 2, op=op, k=int(k), axes=int(axes),
                         indices_type=indices_type if indices_type is not None else trt.int32)

    def add_gather(self, input, indices, axis) -> IGatherLayer:
        return self._add(IGatherLayer, [input, indices], axis=int(axis), mode=trt.GatherMode.DEFAULT,
                         num_elementwise_dims=0)

    def add_normalization(self, input, scale, bias, axesMask) -> INormalizationLayer:  # noqa: N803 (TensorRT's name)
        return self._add(INormalizationLayer, [input, scale, bias], epsilon=1e-5, axes=int(axesMask), num_groups=1)

    def add_padding_nd(self, input, pre_padding, post_padding) -> IPaddingLayer:
        return self._add(IPaddingLayer, [input], pre_padding_nd=Dims(pre_padding), post_padding_nd=Dims(post_padding))

    def add_cast(self, input, to_type) -> ICastLayer:
        return self._add(ICastLayer, [input], to_type=to_type)

    def add_identity(self, input) -> IIdentityLayer:
        return self._add(IIdentityLayer, [input])

    def add_quantize(self, input, scale, output_type) -> IQuantizeLayer:
        return self._add(IQuantizeLayer, [input, scale], axis=-1, to_type=output_type)

    def add_dequantize(self, input, scale, output_type) -> IDequantizeLayer:
        return self._add(IDequantizeLayer, [input, scale], axis=-1, to_type=output_type)

    def add_plugin(self, func, aot=None) -> IPluginV3Layer:
        """`func` is what `reference.plugin.op.<ns>.<name>(...)` returns; `aot` is accepted as TensorRT does."""
        if not isinstance(func, ref_plugin.PluginRequest):
            raise TypeError("the reference backend adds plugins from reference.plugin.op.<ns>.<name>(...) requests")
        op_id, inputs, attrs = func
        definition = ref_plugin.lookup(op_id)
        scalars = {k: v for k, v in attrs.items() if not isinstance(v, np.ndarray)}
        arrays = {f"w_{k}": v for k, v in attrs.items() if isinstance(v, np.ndarray)}
        count = len(definition.shapes([ref_plugin.TensorSpec(tuple(t.shape), t.dtype) for t in inputs], **attrs))
        return self._add(IPluginV3Layer, list(inputs), count, op_id=op_id, module=definition.module,
                         plugin_attrs=scalars, **arrays)

    _REMOVED = {"add_fully_connected": "add_matrix_multiply with a constant (and add_elementwise for the bias)",
                "add_convolution": "add_convolution_nd", "add_deconvolution": "add_deconvolution_nd",
                "add_pooling": "add_pooling_nd", "add_padding": "add_padding_nd", "add_rnn_v2": "add_loop",
                "add_plugin_ext": "add_plugin (tensorrt.plugin) or add_plugin_v3"}

    def __getattr__(self, name: str):
        if name in INetworkDefinition._REMOVED:
            raise AttributeError(f"INetworkDefinition.{name} was removed in TensorRT 10; use "
                                 f"{INetworkDefinition._REMOVED[name]}")
        if name.startswith("add_"):
            raise NotImplementedError(f"INetworkDefinition.{name} is not implemented by the zoo's reference backend; "
                                      f"build on a machine with TensorRT, or add it to zoo/engine/reference")
        raise AttributeError(name)
