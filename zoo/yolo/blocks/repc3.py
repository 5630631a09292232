"""RepC3: the CSP block of RT-DETR's neck (facts: docs/rtdetr.md, upstream `nn/modules/block.py`). Its RepConv is
the one of zoo/yolo/blocks/rep.py (training form act(conv1 3x3 + conv2 1x1) without the identity BatchNorm, or fused
as the keys say; SiLU whatever the table's default). RepC3(c1, c2, n, e=1.0): cv3(m(cv1(x)) +
cv2(x)), with cv3 a 1x1 Conv only when c2 * e differs from c2."""
from __future__ import annotations

import torch
from torch import nn

import layers
from zoo.yolo.registry import Block, register

from .conv import Conv, conv
from .rep import RepConv, rep_conv


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
