"""Ops and blocks of the mobile classifiers (MobileNet v2/v3, MNASNet, EfficientNet, RegNet-Y).

Activations TensorRT has no single layer for are built from the ones it has: ReLU6 is CLIP(0, 6), hardsigmoid is
HARD_SIGMOID(alpha 1/6, beta 1/2) (torch's relu6(x + 3) / 6), hardswish is x * hardsigmoid(x). Squeeze-excitation
is torchvision's `SqueezeExcitation` (global mean, 1x1 conv, activation, 1x1 conv, gate, channel-wise product).
TF's "SAME" padding (EfficientNet ported from TensorFlow) pads the bottom/right more than the top/left when the
total is odd; `same_padding` gives the uneven pair that `conv2d`/`conv_bn` accept.
"""
from __future__ import annotations

from typing import NamedTuple

from wts.weight_map import WeightMap
from zoo.trt_api import trt

from . import core

ACTIVATIONS = ("relu", "relu6", "silu", "sigmoid", "hardsigmoid", "hardswish")


def relu6(net, x, name: str):
    layer = net.add_activation(x, trt.ActivationType.CLIP)
    layer.alpha, layer.beta = 0.0, 6.0
    return core.named(layer, name)


def hardsigmoid(net, x, name: str):
    """torch's hardsigmoid: clamp(x / 6 + 1/2, 0, 1)."""
    layer = net.add_activation(x, trt.ActivationType.HARD_SIGMOID)
    layer.alpha, layer.beta = 1.0 / 6.0, 0.5
    return core.named(layer, name)


def hardswish(net, x, name: str):
    """x * hardsigmoid(x); the gate is the hidden tensor `<name>/hardsigmoid`."""
    return core.multiply(net, x, hardsigmoid(net, x, f"{name}/hardsigmoid"), name)


def act(net, x, kind: str | None, name: str):
    """One of ACTIVATIONS by name; None returns x unchanged (a projection conv has no activation)."""
    if kind is None:
        return x
    if kind == "relu6":
        return relu6(net, x, name)
    if kind == "hardsigmoid":
        return hardsigmoid(net, x, name)
    if kind == "hardswish":
        return hardswish(net, x, name)
    if kind not in ACTIVATIONS:
        raise ValueError(f"unknown activation {kind!r} (known: {ACTIVATIONS})")
    return core.activation(net, x, kind, name)


def same_padding(size: tuple[int, int], kernel: int, stride: int, dilation: int = 1):
    """TF "SAME" padding of an H x W input: ((top, left), (bottom, right)), the odd pixel at the bottom/right.
    Output size is ceil(size / stride)."""
    pre, post = [], []
    for n in size:
        total = max((-(-n // stride) - 1) * stride + (kernel - 1) * dilation + 1 - n, 0)
        pre.append(total // 2)
        post.append(total - total // 2)
    return tuple(pre), tuple(post)


def conv_bn_act(net, weights: WeightMap, conv: str, bn: str, x, out_channels: int, kernel: int, stride: int = 1,
                groups: int = 1, activation: str | None = "relu", name: str | None = None, eps: float = 1e-5,
                same: bool = False):
    """Conv2d(bias=False) -> BatchNorm2d -> activation, the output named `name` (torchvision's
    Conv2dNormActivation is one Sequential: conv `<name>.0`, bn `<name>.1`). Padding is k // 2, or TF's SAME."""
    padding = same_padding(tuple(x.shape[2:]), kernel, stride) if same else kernel // 2
    if same and padding[0] == padding[1]:
        padding = padding[0]
    y = core.conv_bn(net, weights, conv, bn, x, out_channels, kernel, stride, padding, groups, eps)
    y = act(net, y, activation, f"{name or bn}/{activation}" if activation else "")
    return core.rename(y, name) if name else y


def squeeze_excitation(net, weights: WeightMap, prefix: str, x, squeeze: int, activation: str = "relu",
                       gate: str = "sigmoid", reduce: str = "fc1", expand: str = "fc2"):
    """x * gate(expand(activation(reduce(mean_hw(x))))); reduce and expand are 1x1 convolutions with bias."""
    channels = x.shape[1]
    s = core.global_avg_pool(net, x, f"{prefix}.avgpool")
    s = core.conv2d(net, weights, f"{prefix}.{reduce}", s, squeeze, 1)
    s = act(net, s, activation, f"{prefix}.activation")
    s = core.conv2d(net, weights, f"{prefix}.{expand}", s, channels, 1)
    s = act(net, s, gate, f"{prefix}.scale_activation")
    return core.multiply(net, s, x, prefix)


def stem_channels(weights: WeightMap, conv: str) -> int:
    """Output channels of a 3x3 stem convolution on RGB, from its weight's value count (flat .wts keep no shape).
    Configuration inference asks the convolution, never the BatchNorm after it: folded weights have none."""
    return weights.count(f"{conv}.weight") // (3 * 3 * 3)


def make_divisible(value: float, divisor: int = 8, min_value: int | None = None) -> int:
    """Round channels to a multiple of `divisor`, never below 90% of `value` (the MobileNet/EfficientNet rule)."""
    min_value = divisor if min_value is None else min_value
    rounded = max(min_value, int(value + divisor / 2) // divisor * divisor)
    return rounded + divisor if rounded < 0.9 * value else rounded


class Conv(NamedTuple):
    """One conv + BatchNorm (+ activation) step of a block: its weight keys, shape and output name."""
    conv: str
    bn: str
    out_channels: int
    kernel: int
    stride: int
    groups: int
    activation: str | None
    name: str | None


def inverted_residual(net, weights: WeightMap, prefix: str, x, convs, se=None, eps: float = 1e-5,
                      same: bool = False):
    """MobileNet's block: optional 1x1 expansion, depthwise k x k (with the stride), optional squeeze-excitation,
    1x1 projection without activation; plus the input when the stride is 1 and the channels agree.

    `convs` are `Conv` steps (or tuples of its fields), in order; `se` is (prefix, squeeze channels, activation,
    gate), applied after the depthwise conv (the one before the projection).
    """
    y = x
    convs = [Conv(*c) for c in convs]
    for i, c in enumerate(convs):
        y = conv_bn_act(net, weights, c.conv, c.bn, y, c.out_channels, c.kernel, c.stride, c.groups, c.activation,
                        c.name, eps, same)
        if se is not None and i == len(convs) - 2:
            se_prefix, squeeze, se_act, gate = se
            y = squeeze_excitation(net, weights, se_prefix, y, squeeze, se_act, gate)
    if all(c.stride == 1 for c in convs) and x.shape[1] == y.shape[1]:
        return core.add(net, x, y, prefix)
    return core.rename(y, prefix)
