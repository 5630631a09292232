"""SPPF: cv1, three chained k x k stride-1 max pools, cv2 over cat(x, y1, y2, y3) (upstream `nn/modules/block.py`).
Trap: cv1's activation is the default one in weights released before ultralytics 8.4 and none in models that 8.4
builds; a state_dict cannot tell which, so it is a table option (`Options.sppf_act`)."""
from __future__ import annotations

import torch
from torch import nn

import layers
from zoo.yolo.registry import Block, options, register

from .conv import Conv, conv


class SPPF(nn.Module):
    def __init__(self, c1: int, c2: int, k: int = 5):
        super().__init__()
        c_ = c1 // 2
        self.cv1 = Conv(c1, c_, 1, act=options().sppf_act)
        self.cv2 = Conv(c_ * 4, c2, 1)
        self.m = nn.MaxPool2d(kernel_size=k, stride=1, padding=k // 2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = [self.cv1(x)]
        for _ in range(3):
            y.append(self.m(y[-1]))
        return self.cv2(torch.cat(y, 1))


def sppf(net, weights, prefix: str, x, c1: int, c2: int, k: int = 5):
    c_ = c1 // 2
    pooled = [conv(net, weights, f"{prefix}.cv1", x, c1, c_, 1, act=options().sppf_act)]
    for call in range(3):  # one nn.MaxPool2d called three times: validation names its outputs m, m#2, m#3
        name = f"{prefix}.m" if call == 0 else f"{prefix}.m#{call + 1}"
        pooled.append(layers.max_pool(net, pooled[-1], name, k, stride=1, padding=k // 2))
    cat = layers.concat(net, pooled, f"{prefix}/concat")
    return layers.rename(conv(net, weights, f"{prefix}.cv2", cat, 4 * c_, c2, 1), prefix)


register(Block("SPPF", SPPF, sppf))
