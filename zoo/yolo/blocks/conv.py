"""Conv, DWConv, Concat and nn.Upsample: the YOLO line's plain rows (facts: docs of the YOLO blocks, upstream
`nn/modules/conv.py`). BatchNorm eps 1e-3 and momentum 0.03 are what upstream sets at model init (not stored)."""
from __future__ import annotations

import math

import torch
from torch import nn

import layers
from zoo.yolo.registry import Block, TableError, concat, options, register, same

BN_EPS, BN_MOMENTUM = 1e-3, 0.03
ACTIVATIONS = {"silu": nn.SiLU, "relu": nn.ReLU, "sigmoid": nn.Sigmoid, "tanh": nn.Tanh}


def activation_name(act) -> str | None:
    """A Conv's `act` argument as a layers.core activation name: True is the table's default, False none."""
    if act is True:
        return options().activation
    if act is False or act is None:
        return None
    if isinstance(act, str) and act in ACTIVATIONS:
        return act
    raise TableError(f"activation {act!r} is not one of {sorted(ACTIVATIONS)}")


def autopad(k: int, p: int | None, d: int = 1) -> int:
    """'same' padding for odd kernels unless given: k // 2 (dilated: d * (k - 1) // 2 ... upstream's rule)."""
    if p is not None:
        return p
    return (d * (k - 1) + 1) // 2 if d > 1 else k // 2


class Conv(nn.Module):
    """Conv2d(bias=False) -> BatchNorm2d -> activation (`act`: True the table's default, False none)."""

    def __init__(self, c1: int, c2: int, k: int = 1, s: int = 1, p: int | None = None, g: int = 1, d: int = 1,
                 act=True):
        super().__init__()
        self.conv = nn.Conv2d(c1, c2, k, s, autopad(k, p, d), groups=g, dilation=d, bias=False)
        self.bn = nn.BatchNorm2d(c2, eps=BN_EPS, momentum=BN_MOMENTUM)
        name = activation_name(act)
        self.act = ACTIVATIONS[name]() if name else nn.Identity()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.act(self.bn(self.conv(x)))


def conv(net, weights, prefix: str, x, c1: int, c2: int, k: int = 1, s: int = 1, p: int | None = None, g: int = 1,
         d: int = 1, act=True):
    """Conv on the network: `<prefix>.conv`, `<prefix>.bn` (or one biased conv for folded weights), `<prefix>.act`."""
    if d != 1:
        raise TableError(f"{prefix}: dilated Conv (d={d}) is not supported by the network builder")
    y = layers.conv_bn(net, weights, f"{prefix}.conv", f"{prefix}.bn", x, c2, k, s, autopad(k, p), g, BN_EPS)
    name = activation_name(act)
    if name is None:
        return layers.rename(y, prefix)
    return layers.rename(layers.activation(net, y, name, f"{prefix}.act"), prefix)


class DWConv(Conv):
    """Conv with groups = gcd(c1, c2): depthwise when c1 == c2."""

    def __init__(self, c1: int, c2: int, k: int = 1, s: int = 1, d: int = 1, act=True):
        super().__init__(c1, c2, k, s, g=math.gcd(c1, c2), d=d, act=act)


def dwconv(net, weights, prefix: str, x, c1: int, c2: int, k: int = 1, s: int = 1, d: int = 1, act=True):
    return conv(net, weights, prefix, x, c1, c2, k, s, g=math.gcd(c1, c2), d=d, act=act)


class Concat(nn.Module):
    def __init__(self, dimension: int = 1):
        super().__init__()
        self.d = dimension

    def forward(self, xs: list[torch.Tensor]) -> torch.Tensor:
        return torch.cat(list(xs), self.d)


def concat_build(net, weights, prefix: str, xs, dimension: int = 1):
    if dimension != 1:
        raise TableError(f"{prefix}: Concat along dimension {dimension}; only channels (1) are supported")
    return layers.concat(net, list(xs), prefix)


def upsample(size=None, scale_factor=2, mode="nearest"):
    if size is not None or mode != "nearest":
        raise TableError(f"nn.Upsample(size={size!r}, mode={mode!r}): only scale_factor with mode 'nearest'")
    return nn.Upsample(scale_factor=scale_factor, mode=mode)


def upsample_build(net, weights, prefix: str, x, size=None, scale_factor=2, mode="nearest"):
    upsample(size, scale_factor, mode)  # the same checks
    if int(scale_factor) != scale_factor:
        raise TableError(f"{prefix}: nn.Upsample scale_factor {scale_factor!r} is not an integer")
    return layers.upsample_nearest(net, x, prefix, int(scale_factor))


register(Block("Conv", Conv, conv),
         Block("DWConv", DWConv, dwconv),
         Block("Concat", Concat, concat_build, resolve=concat),
         Block("nn.Upsample", upsample, upsample_build, resolve=same))
