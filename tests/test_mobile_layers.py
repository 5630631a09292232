"""layers/mobile.py on the reference backend against torch: ReLU6, hardsigmoid, hardswish, squeeze-excitation,
depthwise conv + BN + activation, TF "SAME" padding, the inverted residual. FP32 tolerance 1e-4."""
from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn

from layers import mobile
from wts.weight_map import WeightMap
from zoo.trt_api import trt
from zoo.engine.model import randomize_batchnorm
from zoo.engine.reference.executor import ReferenceExecutor
from zoo.engine.reference.network import INetworkDefinition

TOL = dict(rtol=1e-4, atol=1e-4)


def _run(build, x: torch.Tensor, state: dict | None = None):
    """Build a one-input network with `build(net, weights, input)` and run it on x."""
    net = INetworkDefinition()
    weights = WeightMap({k: v.detach().numpy() for k, v in (state or {}).items()}, "test")
    inp = net.add_input("x", trt.float32, tuple(x.shape))
    out = build(net, weights, inp)
    net.mark_output(out)
    got = ReferenceExecutor(net).run({"x": x.numpy()})[out.name]
    assert weights.unused() == [], weights.unused()
    return got, out


@pytest.mark.parametrize("kind, reference", [("relu6", F.relu6), ("hardsigmoid", F.hardsigmoid),
                                             ("hardswish", F.hardswish), ("silu", F.silu), ("relu", F.relu)])
def test_activations_equal_torch(kind, reference):
    x = torch.linspace(-8, 8, 2 * 3 * 5 * 7).reshape(2, 3, 5, 7)  # covers both clamps of each
    got, out = _run(lambda net, w, t: mobile.act(net, t, kind, "act"), x)
    torch.testing.assert_close(got, reference(x), **TOL)
    assert out.name == "act"


def test_unknown_activation_is_named():
    with pytest.raises(ValueError, match="unknown activation 'swish'"):
        _run(lambda net, w, t: mobile.act(net, t, "swish", "a"), torch.zeros(1, 1, 2, 2))


class SE(nn.Module):
    """Squeeze-excitation written here with torch ops (torchvision's attribute names)."""

    def __init__(self, c, s, gate):
        super().__init__()
        self.fc1, self.fc2, self.gate = nn.Conv2d(c, s, 1), nn.Conv2d(s, c, 1), gate

    def forward(self, x):
        return x * self.gate(self.fc2(F.relu(self.fc1(x.mean((2, 3), keepdim=True)))))


@pytest.mark.parametrize("gate, reference", [("sigmoid", torch.sigmoid), ("hardsigmoid", F.hardsigmoid)])
def test_squeeze_excitation_equals_torch(gate, reference):
    torch.manual_seed(0)
    se = SE(16, 8, reference).eval()
    x = torch.randn(2, 16, 7, 5)
    state = {f"se.{k}": v for k, v in se.state_dict().items()}
    got, out = _run(lambda net, w, t: mobile.squeeze_excitation(net, w, "se", t, 8, "relu", gate), x, state)
    with torch.no_grad():
        torch.testing.assert_close(got, se(x), **TOL)
    assert out.name == "se"


@pytest.mark.parametrize("size, kernel, stride, expected", [
    ((224, 224), 3, 2, ((0, 0), (1, 1))),   # even input, stride 2: the extra pixel at the bottom/right
    ((225, 224), 3, 2, ((1, 0), (1, 1))),   # odd: even total, split evenly
    ((112, 112), 5, 2, ((1, 1), (2, 2))),
    ((56, 56), 3, 1, ((1, 1), (1, 1))),     # stride 1: k // 2 on both sides
    ((7, 7), 1, 1, ((0, 0), (0, 0))),
])
def test_same_padding_is_tensorflows(size, kernel, stride, expected):
    """TF: output ceil(n / s); total padding max((out - 1) * s + k - n, 0), the smaller half first."""
    assert mobile.same_padding(size, kernel, stride) == expected


@pytest.mark.parametrize("kernel, stride, groups, size", [(3, 2, 8, 10), (5, 2, 8, 9), (3, 1, 1, 6), (1, 1, 1, 5)])
def test_conv_bn_act_same_padding_equals_padded_torch_conv(kernel, stride, groups, size):
    torch.manual_seed(1)
    conv, bn = nn.Conv2d(8, 8, kernel, stride, groups=groups, bias=False), nn.BatchNorm2d(8, eps=1e-3)
    randomize_batchnorm(nn.Sequential(bn), torch.Generator().manual_seed(2))
    x = torch.randn(2, 8, size, size)
    out_size = -(-size // stride)  # TF's SAME: ceil
    total = max((out_size - 1) * stride + kernel - size, 0)
    padded = F.pad(x, (total // 2, total - total // 2, total // 2, total - total // 2))
    with torch.no_grad():
        expected = F.relu6(bn.eval()(conv(padded)))
    state = {**{f"c.{k}": v for k, v in conv.state_dict().items()}, **{f"b.{k}": v for k, v in bn.state_dict().items()}}
    got, _ = _run(lambda net, w, t: mobile.conv_bn_act(net, w, "c", "b", t, 8, kernel, stride, groups, "relu6", "y",
                                                       1e-3, same=True), x, state)
    assert got.shape == expected.shape == (2, 8, out_size, out_size)
    torch.testing.assert_close(got, expected, **TOL)


class InvertedResidual(nn.Module):
    """1x1 expand + BN + hardswish, depthwise 3x3 + BN + hardswish, SE, 1x1 project + BN, + input: written here."""

    def __init__(self, c, hidden, stride):
        super().__init__()
        self.expand, self.bn0 = nn.Conv2d(c, hidden, 1, bias=False), nn.BatchNorm2d(hidden)
        self.dw, self.bn1 = nn.Conv2d(hidden, hidden, 3, stride, 1, groups=hidden, bias=False), nn.BatchNorm2d(hidden)
        self.se = SE(hidden, 8, F.hardsigmoid)
        self.project, self.bn2 = nn.Conv2d(hidden, c, 1, bias=False), nn.BatchNorm2d(c)
        self.residual = stride == 1

    def forward(self, x):
        y = F.hardswish(self.bn0(self.expand(x)))
        y = self.se(F.hardswish(self.bn1(self.dw(y))))
        y = self.bn2(self.project(y))
        return x + y if self.residual else y


@pytest.mark.parametrize("stride", [1, 2])
def test_inverted_residual_equals_torch(stride):
    torch.manual_seed(3)
    block = InvertedResidual(16, 48, stride)
    randomize_batchnorm(block, torch.Generator().manual_seed(4))
    block.eval()
    x = torch.randn(2, 16, 8, 8)
    convs = [("expand", "bn0", 48, 1, 1, 1, "hardswish", "e"), ("dw", "bn1", 48, 3, stride, 48, "hardswish", "d"),
             ("project", "bn2", 16, 1, 1, 1, None, "p")]
    got, out = _run(lambda net, w, t: mobile.inverted_residual(net, w, "block", t, convs,
                                                               ("se", 8, "relu", "hardsigmoid")), x,
                    block.state_dict())
    with torch.no_grad():
        torch.testing.assert_close(got, block(x), **TOL)
    assert out.name == "block"


def test_make_divisible_never_drops_below_ninety_percent():
    assert [mobile.make_divisible(v) for v in (32 * 0.35, 16 * 0.75, 1280 * 1.4, 51.2, 3)] == [16, 16, 1792, 48, 8]
    for v in np.linspace(8, 500, 200):
        r = mobile.make_divisible(v)
        assert r % 8 == 0 and r >= 0.9 * v
