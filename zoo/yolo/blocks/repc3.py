"""RepC3 and its RepConv: the CSP block of RT-DETR's neck (facts: docs/rtdetr.md, upstream `nn/modules/block.py`,
`conv.py`). RepConv in its training form, as checkpoints store it: act(conv1 3x3 + conv2 1x1), each a Conv without
activation, and no identity BatchNorm in RepC3's use. Its activation is SiLU whatever the table's default (RepConv
has its own default, which a table's `activation` key does not change). RepC3(c1, c2, n, e=1.0): cv3(m(cv1(x)) +
cv2(x)), with cv3 a 1x1 Conv only when c2 * e differs from c2."""
from __future__ import annotations

import torch
from torch import nn

import layers
from zoo.yolo.registry import Block, register

from .conv import Conv, conv


class RepConv(nn.Module):
    def __init__(self, c1: int, c2: int):
        super().__init__()
        self.conv1 = Conv(c1, c2, 3, 1, p=1, act=False)
        self.conv2 = Conv(c1, c2, 1, 1, p=0, act=False)
        self.act = nn.SiLU()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.act(self.conv1(x) + self.conv2(x))


def rep_conv(net, weights, prefix: str, x, c1: int, c2: int):
    a = conv(net, weights, f"{prefix}.conv1", x, c1, c2, 3, 1, 1, act=False)
    b = conv(net, weights, f"{prefix}.conv2", x, c1, c2, 1, 1, 0, act=False)
    return layers.activation(net, layers.add(net, a, b, f"{prefix}/add"), "silu", prefix)


class RepC3(nn.Module):
    def __init__(self, c1: int, c2: int, n: int = 3, e: float = 1.0):
        super().__init__()
        c_ = int(c2 * e)
        self.cv1 = Conv(c1, c_, 1, 1)
        self.cv2 = Conv(c1, c_, 1, 1)
        self.m = nn.Sequential(*[RepConv(c_, c_) for _ in range(n)])
        self.cv3 = Conv(c_, c2, 1, 1) if c_ != c2 else nn.Identity()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.cv3(self.m(self.cv1(x)) + self.cv2(x))


def rep_c3(net, weights, prefix: str, x, c1: int, c2: int, n: int = 3, e: float = 1.0):
    c_ = int(c2 * e)
    y = conv(net, weights, f"{prefix}.cv1", x, c1, c_, 1, 1)
    for i in range(n):
        y = rep_conv(net, weights, f"{prefix}.m.{i}", y, c_, c_)
    if n:
        layers.rename(y, f"{prefix}.m")
    y = layers.add(net, y, conv(net, weights, f"{prefix}.cv2", x, c1, c_, 1, 1), f"{prefix}/add")
    return layers.rename(conv(net, weights, f"{prefix}.cv3", y, c_, c2, 1, 1), prefix) if c_ != c2 \
        else layers.rename(y, prefix)


register(Block("RepC3", RepC3, rep_c3, repeats=True))
