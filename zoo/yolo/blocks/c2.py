"""C2: the CSP block of the yolov8 P6 tables' necks (yolov8-p6, -seg-p6, -pose-p6; facts: docs/yolo-tables.md, read
from ultralytics 8.4.190 `nn/modules/block.py`). Like C2f it splits cv1's output in two halves, but its bottlenecks
run in sequence on the FIRST half only and cv2 sees just cat(m(a), b)."""
from __future__ import annotations

import torch
from torch import nn

import layers
from zoo.yolo.blocks.conv import Conv, conv
from zoo.yolo.blocks.csp import Bottleneck, bottleneck
from zoo.yolo.registry import Block, register


class C2(nn.Module):
    """c = int(c2 * e); cv1 Conv(c1, 2c, 1) -> halves [a, b]; m: n Bottleneck(c, c, shortcut, g, 3x3 and 3x3,
    e=1.0) on a; cv2 Conv(2c, c2, 1) on cat(m(a), b)."""

    def __init__(self, c1: int, c2: int, n: int = 1, shortcut: bool = True, g: int = 1, e: float = 0.5):
        super().__init__()
        self.c = int(c2 * e)
        self.cv1 = Conv(c1, 2 * self.c, 1, 1)
        self.cv2 = Conv(2 * self.c, c2, 1)
        self.m = nn.Sequential(*(Bottleneck(self.c, self.c, shortcut, g, k=(3, 3), e=1.0) for _ in range(n)))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        a, b = self.cv1(x).chunk(2, 1)
        return self.cv2(torch.cat((self.m(a), b), 1))


def c2(net, weights, prefix: str, x, c1: int, c2: int, n: int = 1, shortcut: bool = True, g: int = 1,
       e: float = 0.5):
    c = int(c2 * e)
    y = conv(net, weights, f"{prefix}.cv1", x, c1, 2 * c, 1, 1)
    a, b = layers.split(net, y, (c, c), (f"{prefix}/split0", f"{prefix}/split1"))
    for i in range(n):
        a = bottleneck(net, weights, f"{prefix}.m.{i}", a, c, c, shortcut, g, (3, 3), 1.0)
    if n:
        layers.rename(a, f"{prefix}.m")
    cat = layers.concat(net, [a, b], f"{prefix}/concat")
    return layers.rename(conv(net, weights, f"{prefix}.cv2", cat, 2 * c, c2, 1), prefix)


register(Block("C2", C2, c2, repeats=True))
