"""SPPF: cv1, n (default 3) chained k x k stride-1 max pools, cv2 over cat(x, y1, ..., yn), plus the block's input
when `shortcut` and c1 == c2 (YOLO26's `SPPF, [1024, 5, 3, True]`; upstream `nn/modules/block.py`).
Trap: cv1's activation is the default one in weights released before ultralytics 8.4 and none in models that 8.4
builds; a state_dict cannot tell which, so it is a table option (`Options.sppf_act`)."""
from __future__ import annotations

import torch
from torch import nn

import layers
from zoo.yolo.registry import Block, options, register

from .conv import Conv, conv


class SPPF(nn.Module):
    def __init__(self, c1: int, c2: int, k: int = 5, n: int = 3, shortcut: bool = False):
        super().__init__()
        c_ = c1 // 2
        self.n, self.add = n, shortcut and c1 == c2
        self.cv1 = Conv(c1, c_, 1, act=options().sppf_act)
        self.cv2 = Conv(c_ * (n + 1), c2, 1)
        self.m = nn.MaxPool2d(kernel_size=k, stride=1, padding=k // 2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = [self.cv1(x)]
        for _ in range(self.n):
            y.append(self.m(y[-1]))
        y = self.cv2(torch.cat(y, 1))
        return y + x if self.add else y


def sppf(net, weights, prefix: str, x, c1: int, c2: int, k: int = 5, n: int = 3, shortcut: bool = False):
    c_ = c1 // 2
    pooled = [conv(net, weights, f"{prefix}.cv1", x, c1, c_, 1, act=options().sppf_act)]
    for call in range(n):  # one nn.MaxPool2d called n times: validation names its outputs m, m#2, m#3
        name = f"{prefix}.m" if call == 0 else f"{prefix}.m#{call + 1}"
        pooled.append(layers.max_pool(net, pooled[-1], name, k, stride=1, padding=k // 2))
    cat = layers.concat(net, pooled, f"{prefix}/concat")
    if not (shortcut and c1 == c2):
        return layers.rename(conv(net, weights, f"{prefix}.cv2", cat, (n + 1) * c_, c2, 1), prefix)
    y = conv(net, weights, f"{prefix}.cv2", cat, (n + 1) * c_, c2, 1)
    return layers.add(net, y, x, prefix)


register(Block("SPPF", SPPF, sppf))
