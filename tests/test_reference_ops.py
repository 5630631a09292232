"""Each layer of the reference backend, executed by ReferenceExecutor, against an independent PyTorch computation.

TensorRT's semantics are the specification: padding and stride defaults, bitmask axes, default axes (rank - 3),
no broadcasting across ranks, strongly typed dtypes. The expected values are written here from the definitions
(torch.nn.functional or plain math), not taken from the backend. FP32 tolerance 1e-4.
"""
from __future__ import annotations

import importlib
import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from zoo.trt_api import trt
from zoo.trt_api import plugins as ref_plugin
from zoo.engine.reference.executor import ReferenceExecutor
from zoo.engine.reference.network import Dims, INetworkDefinition, NetworkError, Weights

TOL = dict(rtol=1e-4, atol=1e-4)
BATCHES = (1, 3)


def rand(*shape, seed=0, low=-2.0, high=2.0) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return torch.rand(*shape, generator=g) * (high - low) + low


def network(*inputs):
    """A network with inputs given as (name, dtype, shape); returns (net, *tensors)."""
    net = INetworkDefinition()
    return (net, *[net.add_input(name, dtype, shape) for name, dtype, shape in inputs])


def execute(net, outputs, feeds) -> list[torch.Tensor]:
    """Marks `outputs`, runs the network, and checks every result against the shape inferred at build time."""
    outputs = outputs if isinstance(outputs, (list, tuple)) else [outputs]
    for i, t in enumerate(outputs):
        if t.name.startswith("(Unnamed"):
            t.name = f"out{i}"
        net.mark_output(t)
    results = ReferenceExecutor(net).run(feeds)
    values = [results[t.name] for t in outputs]
    for t, v in zip(outputs, values):
        inferred = tuple(t.shape)
        assert len(inferred) == v.dim() and all(d < 0 or d == s for d, s in zip(inferred, v.shape)), \
            f"{t.name}: executed shape {tuple(v.shape)} differs from the inferred shape {inferred}"
        assert v.dtype == {trt.float32: torch.float32, trt.float16: torch.float16, trt.int32: torch.int32,
                           trt.int64: torch.int64, trt.bool: torch.bool, trt.int8: torch.int8}[t.dtype], t.name
    return values


def run_one(x: torch.Tensor, build, dtype=None, shape=None):
    """Network with one input named 'x' of x's shape (or `shape`), `build(net, tensor) -> tensor`; the result."""
    dtype = dtype or {torch.float32: trt.float32, torch.float16: trt.float16, torch.int32: trt.int32,
                      torch.bool: trt.bool}[x.dtype]
    net, t = network(("x", dtype, shape or tuple(x.shape)))
    return execute(net, build(net, t), {"x": x})[0]


# ----------------------------------------------------------------------------------------------------------------
# convolution

CONV_CASES = [
    # (in_ch, out_ch, kernel, stride, dilation, groups, pre, post, bias)
    (3, 8, (3, 3), (1, 1), (1, 1), 1, (1, 1), (1, 1), True),
    (3, 5, (3, 3), (2, 2), (1, 1), 1, (1, 1), (1, 1), False),
    (4, 6, (3, 1), (1, 2), (1, 1), 2, (0, 0), (0, 0), True),
    (6, 6, (3, 3), (1, 1), (1, 1), 6, (1, 1), (1, 1), True),      # depthwise
    (3, 4, (3, 3), (1, 1), (2, 2), 1, (2, 2), (2, 2), True),      # dilation
    (3, 4, (2, 2), (2, 2), (1, 1), 1, (0, 0), (1, 1), True),      # asymmetric: post only ('same' for even k)
    (2, 3, (5, 3), (2, 1), (1, 2), 1, (2, 0), (1, 3), False),     # asymmetric both ways, everything odd
    (3, 4, (1, 1), (1, 1), (1, 1), 1, (0, 0), (0, 0), True),
]


@pytest.mark.parametrize("batch", BATCHES)
@pytest.mark.parametrize("hw", [(7, 9), (8, 8)])
@pytest.mark.parametrize("case", CONV_CASES, ids=[f"conv{i}" for i in range(len(CONV_CASES))])
def test_convolution(case, hw, batch):
    cin, cout, k, stride, dilation, groups, pre, post, bias = case
    x = rand(batch, cin, *hw, seed=1)
    w = rand(cout, cin // groups, *k, seed=2)
    b = rand(cout, seed=3) if bias else None

    def build(net, t):
        layer = net.add_convolution_nd(t, cout, k, w.numpy(), None if b is None else Weights(b.numpy()))
        layer.stride_nd, layer.dilation_nd, layer.num_groups = stride, dilation, groups
        if pre == post:
            layer.padding_nd = pre
        else:
            layer.pre_padding, layer.post_padding = pre, post
        return layer.get_output(0)

    padded = F.pad(x, (pre[1], post[1], pre[0], post[0]))
    expected = F.conv2d(padded, w, b, stride=stride, dilation=dilation, groups=groups)
    torch.testing.assert_close(run_one(x, build), expected, **TOL)


def test_convolution_properties_read_back_and_defaults():
    net, x = network(("x", trt.float32, (1, 2, 5, 5)))
    conv = net.add_convolution_nd(x, 3, (3, 3), np.ones(3 * 2 * 9, np.float32))
    assert conv.stride_nd == (1, 1) and conv.padding_nd == (0, 0) and conv.dilation_nd == (1, 1)
    assert conv.num_groups == 1 and conv.num_output_maps == 3 and conv.kernel_size_nd == (3, 3)
    assert conv.padding_mode == trt.PaddingMode.EXPLICIT_ROUND_DOWN
    assert conv.bias.size == 0 and conv.kernel.size == 54
    assert isinstance(conv.get_output(0).shape, Dims)
    conv.padding_nd = (1, 1)
    assert conv.pre_padding == (1, 1) and conv.post_padding == (1, 1)
    assert conv.get_output(0).shape == (1, 3, 5, 5)
    conv.post_padding = (0, 2)
    assert conv.get_output(0).shape == (1, 3, 4, 6)


def test_convolution_bias_set_after_creation():
    x = rand(1, 2, 5, 5)
    w, b = rand(3, 2, 3, 3, seed=4), rand(3, seed=5)

    def build(net, t):
        layer = net.add_convolution_nd(t, 3, (3, 3), w.numpy())
        layer.bias = b.numpy()
        layer.num_output_maps = 3
        return layer.get_output(0)

    torch.testing.assert_close(run_one(x, build), F.conv2d(x, w, b), **TOL)


def test_convolution_1d_and_3d():
    x1, w1 = rand(3, 2, 11), rand(4, 2, 3, seed=1)
    y1 = run_one(x1, lambda net, t: _with(net.add_convolution_nd(t, 4, (3,), w1.numpy()), stride_nd=(2,)))
    torch.testing.assert_close(y1, F.conv1d(x1, w1, stride=2), **TOL)
    x3, w3 = rand(1, 2, 5, 4, 3), rand(3, 2, 3, 3, 3, seed=1)
    y3 = run_one(x3, lambda net, t: _with(net.add_convolution_nd(t, 3, (3, 3, 3), w3.numpy()), padding_nd=(1, 1, 1)))
    torch.testing.assert_close(y3, F.conv3d(x3, w3, padding=1), **TOL)


def _with(layer, **props):
    for k, v in props.items():
        setattr(layer, k, v)
    return layer.get_output(0)


def test_convolution_wrong_kernel_count_names_layer_and_counts():
    net, x = network(("x", trt.float32, (1, 3, 8, 8)))
    conv = net.add_convolution_nd(x, 4, (3, 3), np.zeros(100, np.float32))
    conv.name = "model.0.conv"
    with pytest.raises(NetworkError, match=r"model\.0\.conv.*100 values.*4x3x3x3 = 108"):
        conv.get_output(0).shape
    conv.kernel = np.zeros(108, np.float32)
    conv.bias = np.zeros(5, np.float32)
    with pytest.raises(NetworkError, match=r"model\.0\.conv.*bias has 5 values.*num_output_maps is 4"):
        conv.get_output(0).shape


def test_convolution_groups_must_divide_channels():
    net, x = network(("x", trt.float32, (1, 3, 8, 8)))
    conv = net.add_convolution_nd(x, 4, (1, 1), np.zeros(12, np.float32))
    conv.num_groups = 2
    conv.name = "grouped"
    with pytest.raises(NetworkError, match="grouped.*num_groups=2"):
        conv.get_output(0).shape


# ----------------------------------------------------------------------------------------------------------------
# pooling: an independent window-by-window implementation of TensorRT's rules


def ref_pool(x, kind, window, stride, pre, post, round_up=False, exclude_pad=True):
    n, c, h, w = x.shape
    sizes = []
    for size, k, s, lo, hi in zip((h, w), window, stride, pre, post):
        span = size + lo + hi - k
        sizes.append((-(-span // s) if round_up else span // s) + 1)
    out = torch.empty(n, c, *sizes)
    for oh in range(sizes[0]):
        for ow in range(sizes[1]):
            h0, w0 = oh * stride[0] - pre[0], ow * stride[1] - pre[1]
            h1, w1 = h0 + window[0], w0 + window[1]
            hs, he, ws, we = max(h0, 0), min(h1, h), max(w0, 0), min(w1, w)
            patch = x[:, :, hs:he, ws:we]
            if kind == "max":
                out[:, :, oh, ow] = patch.amax((2, 3))
            else:
                count = (he - hs) * (we - ws) if exclude_pad else \
                    (min(h1, h + post[0]) - h0) * (min(w1, w + post[1]) - w0)
                out[:, :, oh, ow] = patch.sum((2, 3)) / count
    return out


POOL_CASES = [
    # (kind, window, stride or None (TensorRT's default 1), pre, post, round_up, exclude_pad)
    ("max", (2, 2), None, (0, 0), (0, 0), False, True),
    ("max", (2, 2), (2, 2), (0, 0), (0, 0), False, True),
    ("max", (3, 3), (2, 2), (1, 1), (1, 1), False, True),
    ("max", (5, 5), (1, 1), (2, 2), (2, 2), False, True),          # SPPF
    ("max", (3, 3), (1, 1), (2, 2), (2, 2), False, True),          # padding beyond k/2 (torch's limit)
    ("max", (3, 2), (2, 1), (1, 0), (0, 1), False, True),          # asymmetric
    ("max", (2, 2), (2, 2), (0, 0), (0, 0), True, True),           # EXPLICIT_ROUND_UP
    ("max", (3, 3), (2, 2), (1, 1), (1, 1), True, True),
    ("avg", (2, 2), None, (0, 0), (0, 0), False, True),
    ("avg", (3, 3), (2, 2), (1, 1), (1, 1), False, True),
    ("avg", (3, 3), (2, 2), (1, 1), (1, 1), False, False),
    ("avg", (3, 3), (1, 1), (1, 1), (1, 1), False, False),
    ("avg", (2, 3), (2, 2), (1, 1), (1, 1), False, True),
    ("avg", (2, 2), (2, 2), (0, 0), (0, 0), True, True),
    ("avg", (3, 3), (2, 2), (0, 0), (0, 0), True, True),
]


@pytest.mark.parametrize("batch", BATCHES)
@pytest.mark.parametrize("hw", [(7, 7), (8, 11)])
@pytest.mark.parametrize("case", POOL_CASES, ids=[f"pool{i}-{c[0]}" for i, c in enumerate(POOL_CASES)])
def test_pooling(case, hw, batch):
    kind, window, stride, pre, post, round_up, exclude_pad = case
    x = rand(batch, 3, *hw, seed=7)

    def build(net, t):
        layer = net.add_pooling_nd(t, trt.PoolingType.MAX if kind == "max" else trt.PoolingType.AVERAGE, window)
        if stride is not None:
            layer.stride_nd = stride
        layer.pre_padding, layer.post_padding = pre, post
        if round_up:
            layer.padding_mode = trt.PaddingMode.EXPLICIT_ROUND_UP
        if kind == "avg":
            layer.average_count_excludes_padding = exclude_pad
        return layer.get_output(0)

    expected = ref_pool(x, kind, window, stride or (1, 1), pre, post, round_up, exclude_pad)
    torch.testing.assert_close(run_one(x, build), expected, **TOL)


@pytest.mark.parametrize("kind", ["MAX", "AVERAGE"])
@pytest.mark.parametrize("size,window,stride,pad", [(5, 2, 2, 1), (5, 1, 3, 0)])
def test_pooling_round_up_window_in_the_padding_is_refused(kind, size, window, stride, pad):
    """TensorRT's EXPLICIT_ROUND_UP counts a last window that starts in the post-padding (torch's ceil_mode drops
    it): the backend must not return a tensor of another shape than the one it inferred."""
    net, x = network(("x", trt.float32, (1, 1, size, size)))
    pool = net.add_pooling_nd(x, getattr(trt.PoolingType, kind), (window, window))
    pool.stride_nd, pool.padding_nd = (stride, stride), (pad, pad)
    pool.padding_mode = trt.PaddingMode.EXPLICIT_ROUND_UP
    pool.name = "pool"
    up = -(-(size + 2 * pad - window) // stride) + 1
    assert pool.get_output(0).shape == (1, 1, up, up)
    net.mark_output(pool.get_output(0))
    with pytest.raises(NotImplementedError, match="'pool'.*EXPLICIT_ROUND_UP"):
        ReferenceExecutor(net).run({"x": torch.zeros(1, 1, size, size)})


@pytest.mark.parametrize("size", [7, 8])
def test_convolution_round_up(size):
    """Exact when ceil and floor agree; refused (not silently floor) when they differ."""
    net, x = network(("x", trt.float32, (1, 1, size, size)))
    w = rand(1, 1, 3, 3, seed=6)
    conv = net.add_convolution_nd(x, 1, (3, 3), w.numpy())
    conv.stride_nd, conv.padding_mode, conv.name = (2, 2), trt.PaddingMode.EXPLICIT_ROUND_UP, "conv"
    up = -(-(size - 3) // 2) + 1
    assert conv.get_output(0).shape == (1, 1, up, up)
    xv = rand(1, 1, size, size, seed=7)
    if (size - 3) % 2 == 0:
        torch.testing.assert_close(execute(net, conv.get_output(0), {"x": xv})[0], F.conv2d(xv, w, stride=2), **TOL)
    else:
        net.mark_output(conv.get_output(0))
        with pytest.raises(NotImplementedError, match="'conv'.*EXPLICIT_ROUND_UP"):
            ReferenceExecutor(net).run({"x": xv})


def test_pooling_defaults_are_tensorrt_s():
    net, x = network(("x", trt.float32, (1, 1, 6, 6)))
    pool = net.add_pooling_nd(x, trt.PoolingType.AVERAGE, (2, 2))
    assert pool.stride_nd == (1, 1)  # TensorRT's default, not the window (nn.MaxPool2d's default)
    assert pool.padding_nd == (0, 0) and pool.average_count_excludes_padding is True
    assert pool.get_output(0).shape == (1, 1, 5, 5)
    assert pool.type == trt.PoolingType.AVERAGE and pool.window_size_nd == (2, 2)


def test_pooling_against_torch_modules():
    """Also against nn.functional directly, for the cases where torch and TensorRT agree."""
    x = rand(3, 4, 9, 9)
    y = run_one(x, lambda net, t: _with(net.add_pooling_nd(t, trt.PoolingType.MAX, (5, 5)), padding_nd=(2, 2)))
    torch.testing.assert_close(y, F.max_pool2d(x, 5, 1, 2), **TOL)
    y = run_one(x, lambda net, t: _with(net.add_pooling_nd(t, trt.PoolingType.AVERAGE, (3, 3)), padding_nd=(1, 1),
                                        stride_nd=(2, 2), average_count_excludes_padding=False))
    torch.testing.assert_close(y, F.avg_pool2d(x, 3, 2, 1, count_include_pad=True), **TOL)


# ----------------------------------------------------------------------------------------------------------------
# scale


@pytest.mark.parametrize("shape", [(1, 3, 4, 5), (3, 2, 7, 1)])
@pytest.mark.parametrize("mode", ["UNIFORM", "CHANNEL", "ELEMENTWISE"])
@pytest.mark.parametrize("parts", ["shift", "scale", "shift+scale", "shift+scale+power", "power"])
def test_scale(mode, parts, shape):
    x = rand(*shape, seed=9, low=0.5, high=2.0)  # positive so that any power is defined
    coeff_shape = {"UNIFORM": (1,), "CHANNEL": (shape[1],), "ELEMENTWISE": shape[1:]}[mode]
    view = {"UNIFORM": (1, 1, 1, 1), "CHANNEL": (1, shape[1], 1, 1), "ELEMENTWISE": (1, *shape[1:])}[mode]
    shift = rand(*coeff_shape, seed=10, low=0.1, high=1) if "shift" in parts else None
    scale = rand(*coeff_shape, seed=11, low=0.5, high=1.5) if "scale" in parts else None
    power = rand(*coeff_shape, seed=12, low=0.5, high=2) if "power" in parts else None
    arrays = [None if a is None else a.numpy().ravel() for a in (shift, scale, power)]
    y = run_one(x, lambda net, t: net.add_scale(t, getattr(trt.ScaleMode, mode), *arrays).get_output(0))
    expected = x
    expected = expected * scale.reshape(view) if scale is not None else expected
    expected = expected + shift.reshape(view) if shift is not None else expected
    expected = expected ** power.reshape(view) if power is not None else expected
    torch.testing.assert_close(y, expected, **TOL)


def test_scale_wrong_count_names_layer():
    net, x = network(("x", trt.float32, (1, 3, 4, 4)))
    layer = net.add_scale(x, trt.ScaleMode.CHANNEL, np.zeros(4, np.float32), None, None)
    layer.name = "bn"
    with pytest.raises(NetworkError, match="bn.*shift has 4 values.*needs 3"):
        layer.get_output(0).shape


# ----------------------------------------------------------------------------------------------------------------
# activations and unary


def _erf_gelu(x):
    return 0.5 * x * (1 + torch.erf(x / math.sqrt(2)))


ACTIVATION_DEFS = {  # TensorRT's documented definitions
    "RELU": lambda x, a, b: torch.where(x > 0, x, 0.0),
    "SIGMOID": lambda x, a, b: 1 / (1 + torch.exp(-x)),
    "TANH": lambda x, a, b: (torch.exp(x) - torch.exp(-x)) / (torch.exp(x) + torch.exp(-x)),
    "LEAKY_RELU": lambda x, a, b: torch.where(x >= 0, x, a * x),
    "ELU": lambda x, a, b: torch.where(x >= 0, x, a * (torch.exp(x) - 1)),
    "SELU": lambda x, a, b: torch.where(x >= 0, b * x, b * (a * torch.exp(x) - a)),
    "SOFTSIGN": lambda x, a, b: x / (1 + torch.abs(x)),
    "SOFTPLUS": lambda x, a, b: a * torch.log(torch.exp(b * x) + 1),
    "CLIP": lambda x, a, b: torch.maximum(torch.tensor(a), torch.minimum(torch.tensor(b), x)),
    "HARD_SIGMOID": lambda x, a, b: torch.clamp(a * x + b, 0, 1),
    "SCALED_TANH": lambda x, a, b: a * torch.tanh(b * x),
    "THRESHOLDED_RELU": lambda x, a, b: torch.where(x > a, x, 0.0),
    "GELU_ERF": lambda x, a, b: _erf_gelu(x),
    "GELU_TANH": lambda x, a, b: 0.5 * x * (1 + torch.tanh(math.sqrt(2 / math.pi) * (x + 0.044715 * x ** 3))),
}


def test_every_activation_type_has_a_definition_here():
    assert set(ACTIVATION_DEFS) == set(trt.ActivationType.__members__)


@pytest.mark.parametrize("shape", [(1, 3, 5, 5), (3, 7)])
@pytest.mark.parametrize("alpha,beta", [(0.1, 0.5), (1.6732, 1.0507), (-0.5, 2.0)])
@pytest.mark.parametrize("kind", sorted(ACTIVATION_DEFS))
def test_activation(kind, alpha, beta, shape):
    x = rand(*shape, seed=13, low=-4, high=4)

    def build(net, t):
        layer = net.add_activation(t, getattr(trt.ActivationType, kind))
        layer.alpha, layer.beta = alpha, beta
        assert layer.alpha == pytest.approx(alpha) and layer.type == getattr(trt.ActivationType, kind)
        return layer.get_output(0)

    torch.testing.assert_close(run_one(x, build), ACTIVATION_DEFS[kind](x, alpha, beta).float(), **TOL)


UNARY_DEFS = {  # op: (numpy definition, input range)
    "EXP": (np.exp, (-3, 3)), "LOG": (np.log, (0.1, 5)), "SQRT": (np.sqrt, (0, 5)),
    "RECIP": (np.reciprocal, (0.5, 3)), "ABS": (np.abs, (-3, 3)), "NEG": (np.negative, (-3, 3)),
    "SIN": (np.sin, (-3, 3)), "COS": (np.cos, (-3, 3)), "TAN": (np.tan, (-1.2, 1.2)), "SINH": (np.sinh, (-3, 3)),
    "COSH": (np.cosh, (-3, 3)), "ASIN": (np.arcsin, (-0.99, 0.99)), "ACOS": (np.arccos, (-0.99, 0.99)),
    "ATAN": (np.arctan, (-3, 3)), "ASINH": (np.arcsinh, (-3, 3)), "ACOSH": (np.arccosh, (1.01, 4)),
    "ATANH": (np.arctanh, (-0.9, 0.9)), "CEIL": (np.ceil, (-3, 3)), "FLOOR": (np.floor, (-3, 3)),
    "SIGN": (np.sign, (-3, 3)), "ROUND": (np.round, (-3, 3)),  # np.round: half to even, as TensorRT
}


@pytest.mark.parametrize("shape", [(1, 3, 4, 4), (3, 5)])
@pytest.mark.parametrize("op", sorted(UNARY_DEFS))
def test_unary(op, shape):
    fn, (lo, hi) = UNARY_DEFS[op]
    x = rand(*shape, seed=14, low=lo, high=hi)
    if op == "ROUND":
        x.view(-1)[:4] = torch.tensor([0.5, 1.5, -2.5, 2.5])
    if op == "SIGN":
        x.view(-1)[0] = 0.0
    y = run_one(x, lambda net, t: net.add_unary(t, getattr(trt.UnaryOperation, op)).get_output(0))
    expected = torch.from_numpy(fn(x.numpy().astype(np.float64)).astype(np.float32))
    torch.testing.assert_close(y, expected, **TOL)


def test_unary_erf_and_boolean_ops():
    x = rand(3, 4, seed=15)
    y = run_one(x, lambda net, t: net.add_unary(t, trt.UnaryOperation.ERF).get_output(0))
    torch.testing.assert_close(y, torch.tensor([[math.erf(v) for v in row] for row in x.tolist()]), **TOL)
    b = torch.tensor([[True, False, True]])
    assert torch.equal(run_one(b, lambda net, t: net.add_unary(t, trt.UnaryOperation.NOT).get_output(0)), ~b)
    z = torch.tensor([1.0, math.inf, -math.inf, math.nan, 0.0])
    isinf = run_one(z, lambda net, t: net.add_unary(t, trt.UnaryOperation.ISINF).get_output(0))
    isnan = run_one(z, lambda net, t: net.add_unary(t, trt.UnaryOperation.ISNAN).get_output(0))
    assert isinf.tolist() == [False, True, True, False, False] and isnan.tolist() == [False, False, False, True, False]


# ----------------------------------------------------------------------------------------------------------------
# elementwise and select

ELEMENTWISE_DEFS = {
    "SUM": lambda a, b: a + b, "PROD": lambda a, b: a * b, "MAX": torch.maximum, "MIN": torch.minimum,
    "SUB": lambda a, b: a - b, "DIV": lambda a, b: a / b, "POW": lambda a, b: a ** b,
    "FLOOR_DIV": lambda a, b: torch.floor(a / b),
    "EQUAL": lambda a, b: a == b, "GREATER": lambda a, b: a > b, "LESS": lambda a, b: a < b,
}
BROADCAST_SHAPES = [((2, 3, 4, 5), (2, 3, 4, 5)), ((1, 3, 4, 5), (3, 3, 1, 1)), ((3, 1, 5), (1, 4, 1)),
                    ((1, 1), (3, 7))]


def _elementwise(a, b, op):
    net, ta, tb = network(("a", trt.float32, tuple(a.shape)), ("b", trt.float32, tuple(b.shape)))
    out = net.add_elementwise(ta, tb, getattr(trt.ElementWiseOperation, op)).get_output(0)
    return execute(net, out, {"a": a, "b": b})[0]


@pytest.mark.parametrize("shapes", BROADCAST_SHAPES, ids=str)
@pytest.mark.parametrize("op", sorted(ELEMENTWISE_DEFS))
def test_elementwise(op, shapes):
    a, b = rand(*shapes[0], seed=16, low=0.5, high=3), rand(*shapes[1], seed=17, low=0.5, high=3)
    if op == "EQUAL":
        b = torch.where(rand(*shapes[1], seed=18) > 0, b, 1.5)
        a = torch.where(rand(*shapes[0], seed=19) > 0, a, 1.5)
    y = _elementwise(a, b, op)
    expected = ELEMENTWISE_DEFS[op](a, b)
    assert tuple(y.shape) == tuple(torch.broadcast_shapes(a.shape, b.shape))
    if expected.dtype == torch.bool:
        assert torch.equal(y, expected)
    else:
        torch.testing.assert_close(y, expected, **TOL)


@pytest.mark.parametrize("op,fn", [("AND", torch.logical_and), ("OR", torch.logical_or),
                                   ("XOR", torch.logical_xor)])
def test_elementwise_boolean(op, fn):
    a = torch.tensor([[True, True, False, False]])
    b = torch.tensor([[True], [False]])
    net, ta, tb = network(("a", trt.bool, (1, 4)), ("b", trt.bool, (2, 1)))
    y = execute(net, net.add_elementwise(ta, tb, getattr(trt.ElementWiseOperation, op)).get_output(0),
                {"a": a, "b": b})[0]
    assert torch.equal(y, fn(a, b))


def test_elementwise_integer_ops():
    a = torch.tensor([[7, -7, 9, 4]], dtype=torch.int32)
    b = torch.tensor([[2, 2, -4, 4]], dtype=torch.int32)
    for op, expected in [("SUM", a + b), ("PROD", a * b), ("FLOOR_DIV", torch.floor_divide(a, b)),
                         ("MAX", torch.maximum(a, b))]:
        net, ta, tb = network(("a", trt.int32, (1, 4)), ("b", trt.int32, (1, 4)))
        y = execute(net, net.add_elementwise(ta, tb, getattr(trt.ElementWiseOperation, op)).get_output(0),
                    {"a": a, "b": b})[0]
        assert torch.equal(y, expected), op


def test_elementwise_rank_mismatch_is_an_error():
    net, a, b = network(("a", trt.float32, (1, 3, 4, 4)), ("b", trt.float32, (3, 1, 1)))
    layer = net.add_elementwise(a, b, trt.ElementWiseOperation.SUM)
    layer.name = "add"
    with pytest.raises(NetworkError, match=r"add.*ranks 4 and 3"):
        layer.get_output(0).shape


def test_elementwise_incompatible_shapes_is_an_error():
    net, a, b = network(("a", trt.float32, (1, 3, 4, 4)), ("b", trt.float32, (1, 2, 4, 4)))
    layer = net.add_elementwise(a, b, trt.ElementWiseOperation.SUM)
    with pytest.raises(NetworkError, match=r"\(1, 3, 4, 4\) and \(1, 2, 4, 4\) cannot be broadcast"):
        layer.get_output(0).shape


def test_elementwise_dtype_mismatch_is_an_error():
    net, a, b = network(("a", trt.float32, (1, 3)), ("b", trt.float16, (1, 3)))
    layer = net.add_elementwise(a, b, trt.ElementWiseOperation.SUM)
    layer.name = "mixed"
    with pytest.raises(NetworkError, match="mixed.*types"):
        layer.get_output(0).shape


def test_select_with_broadcast():
    cond = rand(3, 1, 5, seed=20) > 0
    a, b = rand(3, 4, 5, seed=21), rand(1, 4, 1, seed=22)
    net, tc, ta, tb = network(("c", trt.bool, (3, 1, 5)), ("a", trt.float32, (3, 4, 5)),
                              ("b", trt.float32, (1, 4, 1)))
    y = execute(net, net.add_select(tc, ta, tb).get_output(0), {"c": cond, "a": a, "b": b})[0]
    assert torch.equal(y, torch.where(cond, a, b))


def test_select_condition_must_be_bool():
    net, c, a = network(("c", trt.float32, (2,)), ("a", trt.float32, (2,)))
    with pytest.raises(NetworkError, match="condition must be bool"):
        net.add_select(c, a, a).get_output(0).shape


# ----------------------------------------------------------------------------------------------------------------
# concatenation, resize, shuffle, slice


@pytest.mark.parametrize("shapes,default_axis", [
    ([(1, 2, 3, 3), (1, 5, 3, 3)], 1), ([(3, 2, 5, 1), (3, 1, 5, 1), (3, 4, 5, 1)], 1),
    ([(2, 3, 4), (5, 3, 4)], 0), ([(2, 3), (4, 3)], 0), ([(2, 1, 2, 3, 4), (2, 1, 5, 3, 4)], 2)])
def test_concatenation_default_axis(shapes, default_axis):
    xs = [rand(*s, seed=i) for i, s in enumerate(shapes)]
    net, *ts = network(*[(f"x{i}", trt.float32, s) for i, s in enumerate(shapes)])
    layer = net.add_concatenation(ts)
    assert layer.axis == default_axis
    y = execute(net, layer.get_output(0), {f"x{i}": x for i, x in enumerate(xs)})[0]
    assert torch.equal(y, torch.cat(xs, default_axis))


@pytest.mark.parametrize("axis", [0, 1, 2, 3])
def test_concatenation_explicit_axis(axis):
    base = [3, 2, 5, 7]
    shapes = [tuple(base[:axis] + [n] + base[axis + 1:]) for n in (1, 3)]
    xs = [rand(*s, seed=i) for i, s in enumerate(shapes)]
    net, *ts = network(*[(f"x{i}", trt.float32, s) for i, s in enumerate(shapes)])
    layer = net.add_concatenation(ts)
    layer.axis = axis
    y = execute(net, layer.get_output(0), {f"x{i}": x for i, x in enumerate(xs)})[0]
    assert torch.equal(y, torch.cat(xs, axis))


def test_concatenation_mismatch_is_an_error():
    net, a, b = network(("a", trt.float32, (1, 2, 3, 3)), ("b", trt.float32, (1, 2, 4, 3)))
    layer = net.add_concatenation([a, b])
    layer.name = "cat"
    with pytest.raises(NetworkError, match="cat.*differ outside axis 1"):
        layer.get_output(0).shape


@pytest.mark.parametrize("shape", [(1, 3, 4, 5), (3, 2, 7, 3)])
def test_resize_nearest_scales_x2(shape):
    x = rand(*shape, seed=23)

    def build(net, t):
        layer = net.add_resize(t)
        assert layer.resize_mode == trt.InterpolationMode.NEAREST  # TensorRT's default
        layer.scales = (1.0, 1.0, 2.0, 2.0)
        return layer.get_output(0)

    y = run_one(x, build)
    assert torch.equal(y, x.repeat_interleave(2, 2).repeat_interleave(2, 3))
    assert torch.equal(y, F.interpolate(x, scale_factor=2, mode="nearest"))


@pytest.mark.parametrize("shape,out", [((1, 3, 4, 5), (1, 3, 8, 10)), ((3, 2, 7, 3), (3, 2, 14, 9)),
                                       ((1, 1, 6, 6), (1, 1, 3, 3))])
def test_resize_nearest_shape_given(shape, out):
    x = rand(*shape, seed=24)
    y = run_one(x, lambda net, t: _with(net.add_resize(t), shape=out))
    # ASYMMETRIC + FLOOR: source index = floor(dst * in / out)
    ih = (torch.arange(out[2]) * shape[2] // out[2])
    iw = (torch.arange(out[3]) * shape[3] // out[3])
    assert torch.equal(y, x[:, :, ih][:, :, :, iw])


@pytest.mark.parametrize("transform", ["HALF_PIXEL", "ALIGN_CORNERS"])
@pytest.mark.parametrize("shape,out", [((1, 3, 4, 5), (1, 3, 8, 10)), ((3, 2, 7, 3), (3, 2, 5, 8))])
def test_resize_bilinear(transform, shape, out):
    x = rand(*shape, seed=25)

    def build(net, t):
        layer = net.add_resize(t)
        layer.resize_mode = trt.InterpolationMode.LINEAR
        layer.coordinate_transformation = getattr(trt.ResizeCoordinateTransformation, transform)
        layer.shape = out
        return layer.get_output(0)

    expected = F.interpolate(x, size=out[2:], mode="bilinear", align_corners=transform == "ALIGN_CORNERS")
    torch.testing.assert_close(run_one(x, build), expected, **TOL)


def test_resize_dynamic_batch_scales():
    net, t = network(("x", trt.float32, (-1, 3, 4, 4)))
    layer = net.add_resize(t)
    layer.scales = (1.0, 1.0, 2.0, 2.0)
    assert layer.get_output(0).shape == (-1, 3, 8, 8)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float16])
@pytest.mark.parametrize("align", [False, True])
@pytest.mark.parametrize("mode", ["FILL", "CLAMP", "REFLECT"])
def test_grid_sample(mode, align, dtype):
    """Against bilinear sampling written out corner by corner (tests/bilinear_sampling.py) for FILL (zeros outside)
    and CLAMP (border); REFLECT against torch's reflection padding. Grid points reach beyond [-1, 1] and sit on
    pixel centres and edges."""
    import bilinear_sampling

    x = rand(2, 3, 4, 5, seed=70)
    grid = rand(2, 6, 7, 2, seed=71, low=-1.4, high=1.4)
    grid[0, 0, :5, 0] = torch.tensor([-1.0, 1.0, -0.6, 0.2, 0.0])  # edges, pixel edges, a pixel centre
    x, grid = x.to(dtype), grid.to(dtype)
    trt_type = {torch.float32: trt.float32, torch.float16: trt.float16}[dtype]
    net, tx, tg = network(("x", trt_type, (-1, 3, 4, 5)), ("grid", trt_type, (-1, 6, 7, 2)))
    layer = net.add_grid_sample(tx, tg)
    assert (layer.interpolation_mode, layer.align_corners, layer.sample_mode) == (
        trt.InterpolationMode.LINEAR, False, trt.SampleMode.FILL)  # TensorRT's defaults
    layer.sample_mode = getattr(trt.SampleMode, mode)
    layer.align_corners = align
    assert tuple(layer.get_output(0).shape) == (-1, 3, 6, 7)
    y = execute(net, layer.get_output(0), {"x": x, "grid": grid})[0]
    assert y.dtype == dtype
    if mode == "REFLECT":
        expected = F.grid_sample(x.float(), grid.float(), padding_mode="reflection", align_corners=align)
    else:
        expected = torch.from_numpy(bilinear_sampling.grid_sample(
            x.double().numpy(), grid.double().numpy(), align_corners=align,
            border="zeros" if mode == "FILL" else "clamp")).float()
    tol = TOL if dtype == torch.float32 else dict(rtol=2 ** -10, atol=2 ** -9)
    torch.testing.assert_close(y.float(), expected, **tol)


def test_grid_sample_checks_shapes_and_modes():
    net, tx, tg = network(("x", trt.float32, (2, 3, 4, 5)), ("grid", trt.float32, (3, 6, 7, 2)))
    with pytest.raises(NetworkError, match="input batch 2 differs from grid batch 3"):
        net.add_grid_sample(tx, tg).get_output(0).shape
    net, tx, tg = network(("x", trt.float32, (2, 3, 4, 5)), ("grid", trt.float16, (2, 6, 7, 2)))
    with pytest.raises(NetworkError, match="strongly typed"):
        net.add_grid_sample(tx, tg).get_output(0).shape
    net, tx, tg = network(("x", trt.float32, (2, 3, 4, 5)), ("grid", trt.float32, (2, 6, 7, 2)))
    layer = net.add_grid_sample(tx, tg)
    layer.sample_mode = trt.SampleMode.WRAP
    with pytest.raises(NetworkError, match="sample_mode .*WRAP"):
        execute(net, layer.get_output(0), {"x": rand(2, 3, 4, 5), "grid": rand(2, 6, 7, 2)})


@pytest.mark.parametrize("batch", BATCHES)
def test_shuffle_transpose_reshape_transpose(batch):
    x = rand(batch, 3, 4, 5, seed=26)

    def build(net, t):
        layer = net.add_shuffle(t)
        layer.first_transpose = (0, 2, 3, 1)
        layer.reshape_dims = (0, -1, 3)
        layer.second_transpose = (0, 2, 1)
        return layer.get_output(0)

    y = run_one(x, build)
    assert torch.equal(y, x.permute(0, 2, 3, 1).reshape(batch, -1, 3).permute(0, 2, 1))


@pytest.mark.parametrize("dims,expected", [((0, -1), (3, 60)), ((-1,), (180,)), ((0, 0, 20), (3, 3, 20)),
                                           ((3, 0, 2, -1), (3, 3, 2, 10)), ((1, -1, 5), (1, 36, 5))])
def test_shuffle_reshape_zero_and_minus_one(dims, expected):
    x = rand(3, 3, 4, 5, seed=27)
    y = run_one(x, lambda net, t: _with(net.add_shuffle(t), reshape_dims=dims))
    assert tuple(y.shape) == expected and torch.equal(y, x.reshape(expected))


@pytest.mark.parametrize("batch", BATCHES)
def test_shuffle_dynamic_batch(batch):
    net, t = network(("x", trt.float32, (-1, 3, 4, 5)))
    layer = net.add_shuffle(t)
    layer.reshape_dims = (0, -1)
    assert layer.get_output(0).shape == (-1, 60)
    x = rand(batch, 3, 4, 5, seed=28)
    y = execute(net, layer.get_output(0), {"x": x})[0]
    assert torch.equal(y, x.reshape(batch, 60))


def test_shuffle_bad_reshape_is_an_error():
    net, t = network(("x", trt.float32, (2, 3, 5)))
    layer = net.add_shuffle(t)
    layer.name = "flat"
    layer.reshape_dims = (4, -1)
    with pytest.raises(NetworkError, match="flat.*cannot reshape"):
        layer.get_output(0).shape
    layer.reshape_dims = (7, 5)
    with pytest.raises(NetworkError, match="flat.*cannot reshape"):
        layer.get_output(0).shape


@pytest.mark.parametrize("start,size,stride", [
    ((0, 0, 0, 0), (1, 3, 4, 5), (1, 1, 1, 1)), ((1, 1, 1, 0), (2, 2, 3, 3), (1, 1, 1, 2)),
    ((0, 0, 0, 4), (3, 3, 2, 3), (1, 1, 2, -2)), ((2, 0, 3, 0), (2, 1, 2, 2), (-1, 2, -2, 3))])
def test_slice(start, size, stride):
    x = rand(3, 3, 4, 5, seed=29)
    y = run_one(x, lambda net, t: net.add_slice(t, start, size, stride).get_output(0))
    index = [torch.arange(n) * s + b for b, n, s in zip(start, size, stride)]
    expected = x[index[0]][:, index[1]][:, :, index[2]][:, :, :, index[3]]
    assert torch.equal(y, expected)


@pytest.mark.parametrize("batch", BATCHES)
@pytest.mark.parametrize("pre,post", [((0, 0), (1, 1)), ((2, 1), (0, 3)), ((-1, 2), (1, -2))])
def test_padding(pre, post, batch):
    """Zeros around H and W (YOLOv3-tiny's nn.ZeroPad2d((0, 1, 0, 1))); negative amounts trim."""
    x = rand(batch, 2, 4, 5, seed=31)
    y = run_one(x, lambda net, t: net.add_padding_nd(t, pre, post).get_output(0), shape=(-1, 2, 4, 5))
    big = torch.zeros(batch, 2, 4 + 6, 5 + 6)  # room for 3 of padding on every side, then cut to size
    big[:, :, 3:7, 3:8] = x
    expected = big[:, :, 3 - pre[0]:7 + post[0], 3 - pre[1]:8 + post[1]]
    assert torch.equal(y, expected)


def test_padding_that_leaves_nothing_is_an_error():
    net, t = network(("x", trt.float32, (1, 1, 2, 3)))
    layer = net.add_padding_nd(t, (-1, 0), (-1, 0))
    layer.name = "pad"
    with pytest.raises(NetworkError, match="pad.*axis 2 of size 2 padded by"):
        layer.get_output(0).shape


def test_slice_out_of_bounds_is_an_error():
    net, t = network(("x", trt.float32, (3, 4)))
    layer = net.add_slice(t, (0, 2), (3, 2), (1, 2))
    layer.name = "crop"
    with pytest.raises(NetworkError, match="crop.*axis 1: elements 2..4 are outside 0..3"):
        layer.get_output(0).shape


# ----------------------------------------------------------------------------------------------------------------
# matrix multiply, constant, reduce, softmax, topk, gather, cast, identity

MM = trt.MatrixOperation


@pytest.mark.parametrize("a_shape,op0,b_shape,op1", [
    ((3, 4), "NONE", (4, 5), "NONE"), ((4, 3), "TRANSPOSE", (4, 5), "NONE"), ((3, 4), "NONE", (5, 4), "TRANSPOSE"),
    ((4, 3), "TRANSPOSE", (5, 4), "TRANSPOSE"), ((2, 3, 4), "NONE", (2, 4, 5), "NONE"),
    ((2, 3, 4), "NONE", (1, 4, 5), "NONE"), ((1, 3, 4), "NONE", (3, 4, 5), "NONE"),  # batch broadcast
    ((2, 1, 3, 4), "NONE", (1, 3, 5, 4), "TRANSPOSE"),
    ((4,), "VECTOR", (4, 5), "NONE"), ((3, 4), "NONE", (4,), "VECTOR"), ((2, 4), "VECTOR", (2, 4, 5), "NONE"),
    ((2, 4), "VECTOR", (2, 5, 4), "TRANSPOSE"), ((2, 4, 3), "TRANSPOSE", (2, 4), "VECTOR"),
    ((2, 4), "VECTOR", (2, 4), "VECTOR")], ids=str)
def test_matrix_multiply(a_shape, op0, b_shape, op1):
    a, b = rand(*a_shape, seed=30), rand(*b_shape, seed=31)
    net, ta, tb = network(("a", trt.float32, a_shape), ("b", trt.float32, b_shape))
    y = execute(net, net.add_matrix_multiply(ta, getattr(MM, op0), tb, getattr(MM, op1)).get_output(0),
                {"a": a, "b": b})[0]
    ea = a.transpose(-1, -2) if op0 == "TRANSPOSE" else a
    eb = b.transpose(-1, -2) if op1 == "TRANSPOSE" else b
    if op0 == "VECTOR" and op1 == "VECTOR":
        expected = (ea * eb).sum(-1)
    elif op0 == "VECTOR":
        expected = torch.einsum("...k,...kn->...n", ea, eb)
    elif op1 == "VECTOR":
        expected = torch.einsum("...mk,...k->...m", ea, eb)
    else:
        expected = (ea[..., :, :, None] * eb[..., None, :, :]).sum(-2)  # broadcast over batch dims
    torch.testing.assert_close(y, expected, **TOL)


def test_matrix_multiply_inner_mismatch_is_an_error():
    net, a, b = network(("a", trt.float32, (3, 4)), ("b", trt.float32, (5, 6)))
    layer = net.add_matrix_multiply(a, MM.NONE, b, MM.NONE)
    layer.name = "fc"
    with pytest.raises(NetworkError, match="fc.*inner dimensions differ"):
        layer.get_output(0).shape


@pytest.mark.parametrize("array", [np.arange(6, dtype=np.float32).reshape(2, 3), np.arange(4, dtype=np.int32),
                                   np.array([[1.5, -2.25]], np.float16), np.array([True, False]),
                                   np.arange(3, dtype=np.int64), np.array([-3, 7], np.int8)], ids=str)
def test_constant_dtype_from_numpy(array):
    net = INetworkDefinition()
    layer = net.add_constant(array.shape, array)
    want = {np.float32: trt.float32, np.int32: trt.int32, np.float16: trt.float16, np.bool_: trt.bool,
            np.int64: trt.int64, np.int8: trt.int8}[array.dtype.type]
    assert layer.get_output(0).dtype == want and layer.get_output(0).shape == array.shape
    assert layer.weights.dtype == want and layer.weights.size == array.size
    y = execute(net, layer.get_output(0), {})[0]
    assert np.array_equal(y.numpy(), array)


def test_constant_count_mismatch_is_an_error():
    net = INetworkDefinition()
    layer = net.add_constant((2, 3), np.zeros(5, np.float32))
    layer.name = "anchors"
    with pytest.raises(NetworkError, match=r"anchors.*5 weights for shape \(2, 3\)"):
        layer.get_output(0).shape


@pytest.mark.parametrize("keep", [True, False])
@pytest.mark.parametrize("mask", [0b0001, 0b0010, 0b1100, 0b1010, 0b1111])
@pytest.mark.parametrize("op", ["SUM", "AVG", "MAX", "MIN", "PROD"])
def test_reduce(op, mask, keep):
    x = rand(3, 4, 5, 3, seed=32, low=0.5, high=1.5)
    axes = tuple(a for a in range(4) if mask >> a & 1)
    y = run_one(x, lambda net, t: net.add_reduce(t, getattr(trt.ReduceOperation, op), mask, keep).get_output(0))
    fn = {"SUM": torch.sum, "AVG": torch.mean, "MAX": torch.amax, "MIN": torch.amin}.get(op)
    if fn is not None:
        expected = fn(x, axes, keepdim=keep)
    else:
        expected = torch.tensor(np.prod(x.numpy(), axis=axes, keepdims=keep))
    torch.testing.assert_close(y, expected, **TOL)


def test_reduce_axes_beyond_rank_is_an_error():
    net, t = network(("x", trt.float32, (2, 3)))
    with pytest.raises(NetworkError, match="beyond rank 2"):
        net.add_reduce(t, trt.ReduceOperation.SUM, 0b100, False).get_output(0).shape


@pytest.mark.parametrize("shape,default_axis", [((3, 4, 5, 6), 1), ((4, 5, 6), 0), ((5, 6), 0), ((7,), 0),
                                                ((2, 3, 4, 5, 6), 2)])
def test_softmax_default_axis(shape, default_axis):
    x = rand(*shape, seed=33)

    def build(net, t):
        layer = net.add_softmax(t)
        assert layer.axes == 1 << default_axis
        return layer.get_output(0)

    torch.testing.assert_close(run_one(x, build), torch.softmax(x, default_axis), **TOL)


@pytest.mark.parametrize("axis", [0, 1, 2, 3])
def test_softmax_bitmask_axes(axis):
    x = rand(3, 4, 5, 6, seed=34, low=-5, high=5)
    y = run_one(x, lambda net, t: _with(net.add_softmax(t), axes=1 << axis))
    torch.testing.assert_close(y, torch.exp(x) / torch.exp(x).sum(axis, keepdim=True), **TOL)


def test_softmax_with_two_axes_is_an_error():
    net, t = network(("x", trt.float32, (2, 3, 4)))
    layer = net.add_softmax(t)
    layer.axes = 0b110
    with pytest.raises(NetworkError, match="exactly one axis"):
        layer.get_output(0).shape


@pytest.mark.parametrize("op", ["MAX", "MIN"])
@pytest.mark.parametrize("shape,mask,k", [((3, 10), 0b10, 4), ((2, 7, 3), 0b010, 7), ((5, 4, 1), 0b001, 2)])
def test_topk(op, shape, mask, k):
    x = torch.randperm(int(np.prod(shape)), generator=torch.Generator().manual_seed(35)).float().reshape(shape)
    axis = mask.bit_length() - 1
    net, t = network(("x", trt.float32, shape))
    layer = net.add_topk(t, getattr(trt.TopKOperation, op), k, mask)
    assert layer.indices_type == trt.int32
    values, indices = execute(net, [layer.get_output(0), layer.get_output(1)], {"x": x})
    order = torch.argsort(x, axis, descending=op == "MAX").narrow(axis, 0, k)
    assert indices.dtype == torch.int32 and torch.equal(indices.long(), order)
    assert torch.equal(values, torch.gather(x, axis, order))


def test_topk_k_larger_than_the_axis_is_an_error():
    net, t = network(("x", trt.float32, (2, 5)))
    layer = net.add_topk(t, trt.TopKOperation.MAX, 7, 0b10)
    layer.name = "best"
    with pytest.raises(NetworkError, match=r"best.*k=7 must be in 1\.\.5"):
        layer.get_output(0).shape


def test_topk_int64_indices():
    x = rand(2, 6, seed=36)
    net, t = network(("x", trt.float32, (2, 6)))
    layer = net.add_topk(t, trt.TopKOperation.MAX, 2, 0b10, trt.int64)
    values, indices = execute(net, [layer.get_output(0), layer.get_output(1)], {"x": x})
    assert indices.dtype == torch.int64 and torch.equal(indices, torch.topk(x, 2, 1).indices)


@pytest.mark.parametrize("axis", [0, 1, 2])
@pytest.mark.parametrize("index_shape", [(4,), (2, 3), ()])
def test_gather(axis, index_shape):
    x = rand(3, 4, 5, seed=37)
    n = x.shape[axis]
    idx = torch.randint(0, n, index_shape, generator=torch.Generator().manual_seed(38), dtype=torch.int32)
    net, tx, ti = network(("x", trt.float32, (3, 4, 5)), ("i", trt.int32, index_shape))
    y = execute(net, net.add_gather(tx, ti, axis).get_output(0), {"x": x, "i": idx})[0]
    expected = np.take(x.numpy(), idx.numpy(), axis=axis)
    assert np.array_equal(y.numpy(), expected)


def test_gather_float_indices_is_an_error():
    net, tx, ti = network(("x", trt.float32, (3, 4)), ("i", trt.float32, (2,)))
    with pytest.raises(NetworkError, match="indices must be int32 or int64"):
        net.add_gather(tx, ti, 0).get_output(0).shape


def test_cast_fp32_fp16_fp32_rounds_like_torch():
    x = torch.cat([rand(1000, seed=39, low=-70000, high=70000), rand(1000, seed=40, low=-1e-3, high=1e-3),
                   torch.tensor([1 / 3, 2049.0, 65504.0, 65520.0, 1e-8, -0.0])])

    def build(net, t):
        half = net.add_cast(t, trt.float16)
        assert half.to_type == trt.float16 and half.get_output(0).dtype == trt.float16
        return net.add_cast(half.get_output(0), trt.float32).get_output(0)

    y = run_one(x, build)
    assert torch.equal(y, x.half().float())


def test_cast_to_int_and_bool():
    x = torch.tensor([0.0, 1.0, -3.0, 2.0])
    y = run_one(x, lambda net, t: net.add_cast(t, trt.bool).get_output(0))
    assert torch.equal(y, x != 0)
    f = torch.tensor([1.2, 4.5, 5.6, 9.1])  # TensorRT's Cast operator example: truncation
    assert run_one(f, lambda net, t: net.add_cast(t, trt.int32).get_output(0)).tolist() == [1, 4, 5, 9]
    i = torch.tensor([1, -2, 300], dtype=torch.int32)
    y = run_one(i, lambda net, t: net.add_cast(t, trt.float32).get_output(0))
    assert torch.equal(y, i.float())


def test_identity():
    x = rand(3, 2, 5, seed=41)
    assert torch.equal(run_one(x, lambda net, t: net.add_identity(t).get_output(0)), x)
    h = x.half()
    y = run_one(h, lambda net, t: net.add_identity(t).get_output(0), dtype=trt.float16)
    assert y.dtype == torch.float16 and torch.equal(y, h)


# ----------------------------------------------------------------------------------------------------------------
# quantize / dequantize


def _calibration():
    try:
        module = importlib.import_module("zoo.engine.calibration")
    except ImportError as e:
        pytest.skip(f"zoo.engine.calibration is missing ({e}): the reference backend's Q/DQ layers need it")
    for name in ("quantize", "dequantize"):
        if not hasattr(module, name):
            pytest.skip(f"zoo.engine.calibration has no {name}(): the reference backend's Q/DQ layers need it")
    return module


@pytest.mark.parametrize("per_channel", [False, True])
def test_quantize_dequantize(per_channel):
    _calibration()
    x = rand(3, 4, 5, 5, seed=42, low=-3, high=3)
    x.view(-1)[:4] = torch.tensor([0.25, 0.75, -0.25, 100.0])  # ties at scale 0.5, and a clamped value
    scale = np.array([0.5, 0.02, 0.1, 0.03], np.float32) if per_channel else np.array([0.5], np.float32)
    net, t = network(("x", trt.float32, tuple(x.shape)))
    s = net.add_constant(scale.shape if per_channel else (), scale).get_output(0)
    q = net.add_quantize(t, s, trt.int8)
    if per_channel:
        q.axis = 1
    dq = net.add_dequantize(q.get_output(0), s, trt.float32)
    if per_channel:
        dq.axis = 1
    assert q.to_type == trt.int8 and dq.to_type == trt.float32
    q_out, dq_out = execute(net, [q.get_output(0), dq.get_output(0)], {"x": x})
    view = torch.from_numpy(scale).reshape(1, -1, 1, 1) if per_channel else torch.from_numpy(scale).reshape(())
    expected_q = torch.clamp(torch.round(x / view), -128, 127)  # torch.round: half to even
    assert q_out.dtype == torch.int8 and torch.equal(q_out.float(), expected_q)
    assert torch.equal(dq_out, expected_q * view)


def test_quantize_scale_must_be_constant_and_positive():
    _calibration()
    net, t, s = network(("x", trt.float32, (1, 2)), ("s", trt.float32, ()))
    layer = net.add_quantize(t, s, trt.int8)
    with pytest.raises(NetworkError, match="build-time constant"):
        layer.get_output(0).shape
    net, t = network(("x", trt.float32, (1, 2)))
    zero = net.add_constant((), np.array([0.0], np.float32)).get_output(0)
    with pytest.raises(NetworkError, match="> 0"):
        net.add_quantize(t, zero, trt.int8).get_output(0).shape


# ----------------------------------------------------------------------------------------------------------------
# plugins


def _scale_add_shapes(inputs, *, alpha, offsets):
    (x,) = inputs
    if len(x.shape) != 2:
        raise ValueError(f"test::scale_add wants a rank-2 input, got {x.shape}")
    return [ref_plugin.TensorSpec(x.shape, x.dtype), ref_plugin.TensorSpec((x.shape[0],), trt.float32)]


def _scale_add_forward(x, *, alpha, offsets):
    y = x * alpha + torch.as_tensor(offsets)
    return y, y.sum(1)


ref_plugin.register("test::scale_add", shapes=_scale_add_shapes, forward=_scale_add_forward)


@pytest.mark.parametrize("batch", BATCHES)
def test_plugin(batch):
    x = rand(batch, 4, seed=43)
    offsets = np.array([1, 2, 3, 4], np.float32)
    net, t = network(("x", trt.float32, (batch, 4)))
    layer = net.add_plugin(ref_plugin.op.test.scale_add(t, alpha=2.5, offsets=offsets))
    assert layer.num_outputs == 2 and layer.type == trt.LayerType.PLUGIN_V3
    assert layer.get_output(0).shape == (batch, 4) and layer.get_output(1).shape == (batch,)
    y, total = execute(net, [layer.get_output(0), layer.get_output(1)], {"x": x})
    expected = x * 2.5 + torch.from_numpy(offsets)
    torch.testing.assert_close(y, expected, **TOL)
    torch.testing.assert_close(total, expected.sum(1), **TOL)


def test_plugin_shape_error_names_the_layer():
    net, t = network(("x", trt.float32, (1, 4)))
    layer = net.add_plugin(ref_plugin.op.test.scale_add(t, alpha=1.0, offsets=np.zeros(4, np.float32)))
    layer.name = "decode"
    layer.set_input(0, net.add_shuffle(t).get_output(0))
    layer.get_input(0)._layer.reshape_dims = (1, 2, 2)
    with pytest.raises(NetworkError, match="decode.*rank-2"):
        layer.get_output(0).shape


def test_unregistered_plugin_is_an_error():
    with pytest.raises(KeyError, match="test::missing"):
        ref_plugin.op.test.missing()


# ----------------------------------------------------------------------------------------------------------------
# shape inference, properties after creation, precision, errors


def test_dynamic_batch_propagates_and_runs():
    net, x = network(("x", trt.float32, (-1, 3, 8, 8)))
    w = rand(4, 3, 3, 3, seed=44)
    conv = net.add_convolution_nd(x, 4, (3, 3), w.numpy())
    conv.padding_nd, conv.stride_nd = (1, 1), (2, 2)
    act = net.add_activation(conv.get_output(0), trt.ActivationType.RELU)
    pool = net.add_pooling_nd(act.get_output(0), trt.PoolingType.MAX, (2, 2))
    pool.stride_nd = (2, 2)
    flat = net.add_shuffle(pool.get_output(0))
    flat.reshape_dims = (0, -1)
    fc_w = net.add_constant((1, 16), rand(1, 16, seed=45).numpy()).get_output(0)
    mm = net.add_matrix_multiply(flat.get_output(0), MM.NONE, fc_w, MM.TRANSPOSE)
    red = net.add_reduce(conv.get_output(0), trt.ReduceOperation.AVG, 0b1100, True)
    assert conv.get_output(0).shape == (-1, 4, 4, 4)
    assert pool.get_output(0).shape == (-1, 4, 2, 2)
    assert flat.get_output(0).shape == (-1, 16) and mm.get_output(0).shape == (-1, 1)
    assert red.get_output(0).shape == (-1, 4, 1, 1)
    mm.get_output(0).name, red.get_output(0).name = "logits", "gap"
    net.mark_output(mm.get_output(0))
    net.mark_output(red.get_output(0))
    executor = ReferenceExecutor(net)
    for batch in BATCHES:
        xv = rand(batch, 3, 8, 8, seed=46)
        out = executor.run({"x": xv})
        c = F.conv2d(xv, w, padding=1, stride=2)
        p = F.max_pool2d(torch.relu(c), 2, 2).reshape(batch, -1)
        torch.testing.assert_close(out["logits"], p @ rand(1, 16, seed=45).T, **TOL)
        torch.testing.assert_close(out["gap"], c.mean((2, 3), keepdim=True), **TOL)


def test_setting_a_property_after_reading_a_shape_updates_downstream():
    net, x = network(("x", trt.float32, (1, 3, 8, 8)))
    conv = net.add_convolution_nd(x, 4, (3, 3), np.zeros(108, np.float32))
    act = net.add_activation(conv.get_output(0), trt.ActivationType.RELU)
    cat = net.add_concatenation([act.get_output(0), act.get_output(0)])
    assert cat.get_output(0).shape == (1, 8, 6, 6)
    conv.stride_nd = (2, 2)
    assert act.get_output(0).shape == (1, 4, 3, 3) and cat.get_output(0).shape == (1, 8, 3, 3)
    conv.padding_nd = (1, 1)
    assert cat.get_output(0).shape == (1, 8, 4, 4)
    cat.axis = 3
    assert cat.get_output(0).shape == (1, 4, 4, 8)
    x.shape = (2, 3, 16, 16)  # network inputs have a settable shape, as in TensorRT
    assert cat.get_output(0).shape == (2, 4, 8, 16)


def test_set_input_rewires_and_reinfers():
    net, x, y = network(("x", trt.float32, (1, 2, 4, 4)), ("y", trt.float32, (1, 2, 6, 6)))
    act = net.add_activation(x, trt.ActivationType.RELU)
    assert act.get_output(0).shape == (1, 2, 4, 4)
    act.set_input(0, y)
    assert act.get_input(0) is y and act.get_output(0).shape == (1, 2, 6, 6)


def test_fp16_input_with_fp32_weights_names_the_layer():
    net, x = network(("x", trt.float16, (1, 3, 8, 8)))
    conv = net.add_convolution_nd(x, 4, (3, 3), np.zeros(108, np.float32))
    conv.name = "model.0.conv"
    with pytest.raises(NetworkError, match=r"model\.0\.conv.*float32.*(HALF|float16)"):
        conv.get_output(0).shape
    net, x = network(("x", trt.float16, (1, 3, 8, 8)))
    scale = net.add_scale(x, trt.ScaleMode.CHANNEL, np.zeros(3, np.float32), None, None)
    scale.name = "model.0.bn"
    with pytest.raises(NetworkError, match=r"model\.0\.bn.*shift weights are float32"):
        scale.get_output(0).shape


def test_fp16_network_stores_half_values():
    """Each layer computes in FP32 from FP16 inputs and stores its output as FP16, as TensorRT's FP16 kernels."""
    x = rand(3, 3, 9, 9, seed=47)
    w, b = rand(8, 3, 3, 3, seed=48) * 0.3, rand(8, seed=49)
    s, sh = rand(8, seed=50, low=0.5, high=1.5), rand(8, seed=51)
    net, t = network(("x", trt.float16, (3, 3, 9, 9)))
    conv = net.add_convolution_nd(t, 8, (3, 3), w.half().numpy(), b.half().numpy())
    conv.padding_nd = (1, 1)
    bn = net.add_scale(conv.get_output(0), trt.ScaleMode.CHANNEL, sh.half().numpy(), s.half().numpy(), None)
    sig = net.add_activation(bn.get_output(0), trt.ActivationType.SIGMOID)
    silu = net.add_elementwise(bn.get_output(0), sig.get_output(0), trt.ElementWiseOperation.PROD)
    pool = net.add_pooling_nd(silu.get_output(0), trt.PoolingType.AVERAGE, (2, 2))
    pool.stride_nd = (2, 2)
    out = net.add_cast(pool.get_output(0), trt.float32)
    for layer in (conv, bn, sig, silu, pool):
        assert layer.get_output(0).dtype == trt.float16
    # Marking every intermediate as an output keeps each layer separate (the executor fuses conv + scale and
    # sigmoid * x only where the hidden tensor is not needed), so each layer's FP16 storage is observable.
    *_, y_half, y = execute(net, [conv.get_output(0), bn.get_output(0), sig.get_output(0), silu.get_output(0),
                                  out.get_output(0)], {"x": x.half()})

    def r(v):  # the layer's FP32 result, stored as FP16
        return v.half().float()

    c = r(F.conv2d(r(x), r(w), r(b), padding=1))
    n = r(c * r(s).view(1, -1, 1, 1) + r(sh).view(1, -1, 1, 1))
    g = r(torch.sigmoid(n))
    m = r(n * g)
    p = r(F.avg_pool2d(m, 2, 2))
    assert y_half.dtype == torch.float16
    # bit-exact here; one FP16 ulp is allowed where a CPU fuses multiply-adds differently in FP32
    for got, want in ((y_half.float(), m), (y, p)):
        torch.testing.assert_close(got, want, rtol=2 ** -10, atol=2 ** -24)
        assert (got == want).float().mean() > 0.99


def test_fp16_input_must_be_fed_as_fp16():
    net, x = network(("x", trt.float16, (1, 2)))
    net.mark_output(net.add_identity(x).get_output(0))
    with pytest.raises(NetworkError, match="'x' must be torch.float16"):
        ReferenceExecutor(net).run({"x": torch.zeros(1, 2)})


def test_input_shape_checked_at_run_time():
    net, x = network(("x", trt.float32, (-1, 3)))
    net.mark_output(net.add_identity(x).get_output(0))
    executor = ReferenceExecutor(net)
    with pytest.raises(NetworkError, match=r"shape \(2, 4\).*\(-1, 3\)"):
        executor.run({"x": torch.zeros(2, 4)})
    with pytest.raises(NetworkError, match="missing input 'x'"):
        executor.run({})


def test_network_without_outputs_is_an_error():
    net, x = network(("x", trt.float32, (1, 2)))
    net.add_identity(x)
    with pytest.raises(NetworkError, match="no outputs"):
        ReferenceExecutor(net)


def test_unimplemented_api_names_itself():
    net, x = network(("x", trt.float32, (1, 3, 4, 4)))
    with pytest.raises(NotImplementedError, match=r"INetworkDefinition\.add_lrn"):
        net.add_lrn(x, 3, 1e-4, 0.75, 1.0)
    with pytest.raises(NotImplementedError, match=r"INetworkDefinition\.add_einsum"):
        net.add_einsum([x], "nchw->nchw")
    with pytest.raises(AttributeError):
        net.no_such_attribute


def test_unimplemented_modes_are_not_silently_wrong():
    net, x = network(("x", trt.float32, (1, 3, 4, 4)))
    pool = net.add_pooling_nd(x, trt.PoolingType.MAX_AVERAGE_BLEND, (2, 2))
    net.mark_output(pool.get_output(0))
    with pytest.raises(NotImplementedError, match="MAX_AVERAGE_BLEND"):
        ReferenceExecutor(net)
    net, x = network(("x", trt.float32, (1, 3, 4, 4)))
    resize = net.add_resize(x)
    resize.scales = (1, 1, 2, 2)
    resize.resize_mode = trt.InterpolationMode.CUBIC
    net.mark_output(resize.get_output(0))
    with pytest.raises(NotImplementedError, match="CUBIC"):
        ReferenceExecutor(net)


def test_default_names_and_settable_names():
    net, x = network(("x", trt.float32, (1, 3, 4, 4)))
    a = net.add_activation(x, trt.ActivationType.RELU)
    assert a.name == "(Unnamed Layer* 0) [Activation]" and a.get_output(0).name.startswith(a.name)
    a.name, a.get_output(0).name = "model.0.act", "model.0"
    assert net.get_layer(0).name == "model.0.act" and net.get_layer(0).get_output(0).name == "model.0"
    assert net.num_layers == 1 and net.num_inputs == 1 and net.get_input(0) is x
    assert x.is_network_input and not a.get_output(0).is_network_input
    net.mark_output(a.get_output(0))
    assert a.get_output(0).is_network_output and net.num_outputs == 1
    net.unmark_output(a.get_output(0))
    assert net.num_outputs == 0
    with pytest.raises(NetworkError, match="already has an input named 'x'"):
        net.add_input("x", trt.float32, (1,))


@pytest.mark.parametrize("slopes_shape", [(1, 3, 1, 1), (1, 3, 5, 1), (1, 1, 1, 1)])
def test_parametric_relu_against_torch(slopes_shape):
    x = rand(2, 3, 5, 4, seed=21)
    slopes = rand(*slopes_shape, seed=22, low=0.0, high=0.5)

    def build(net, t):
        s = net.add_constant(slopes_shape, Weights(slopes.numpy())).get_output(0)
        return net.add_parametric_relu(t, s).get_output(0)

    expected = torch.where(x >= 0, x, x * slopes)
    torch.testing.assert_close(run_one(x, build), expected, **TOL)


@pytest.mark.parametrize("stride,padding,groups,bias", [(2, 0, 1, True), (2, 1, 2, False), (3, 1, 1, True)])
def test_deconvolution_against_conv_transpose2d(stride, padding, groups, bias):
    x = rand(2, 4, 5, 6, seed=31)
    w = rand(4, 6 // groups, 3, 3, seed=32)
    b = rand(6, seed=33) if bias else None

    def build(net, t):
        layer = net.add_deconvolution_nd(t, 6, (3, 3), Weights(w.numpy()), Weights(b.numpy()) if bias else None)
        layer.stride_nd, layer.padding_nd, layer.num_groups = (stride, stride), (padding, padding), groups
        return layer.get_output(0)

    expected = F.conv_transpose2d(x, w, b, stride=stride, padding=padding, groups=groups)
    torch.testing.assert_close(run_one(x, build), expected, **TOL)


@pytest.mark.parametrize("axes", [(3,), (2, 3), (1, 2, 3)])
def test_normalization_against_its_formula(axes):
    x = rand(2, 3, 4, 5, seed=41)
    shape = tuple(x.shape[a] if a in axes else 1 for a in range(4))
    scale, bias = rand(*shape, seed=42), rand(*shape, seed=43)

    def build(net, t):
        s = net.add_constant(shape, Weights(scale.numpy())).get_output(0)
        b = net.add_constant(shape, Weights(bias.numpy())).get_output(0)
        layer = net.add_normalization(t, s, b, sum(1 << a for a in axes))
        layer.epsilon = 1e-3
        return layer.get_output(0)

    mean = x.mean(dim=axes, keepdim=True)
    var = ((x - mean) ** 2).mean(dim=axes, keepdim=True)
    expected = (x - mean) / torch.sqrt(var + 1e-3) * scale + bias
    torch.testing.assert_close(run_one(x, build), expected, **TOL)
