"""ResNetLayer and ResNetBlock: the backbone of rtdetr-resnet50 and -resnet101 (facts: docs/rtdetr.md, upstream
`nn/modules/block.py`). Its Convs take the table's default activation (SiLU: these are not torchvision's ReLU
ResNets), only the sum of a block ends in ReLU.

- ResNetLayer(c1, c2, s, is_first, n, e=4): the first layer is Conv 7x7/2 (padding 3) then a 3x3/2 max pool
  (padding 1), under `layer.0` and `layer.1`; the others are n ResNetBlocks under `layer.<j>`, the first with stride
  s, output e * c2 channels.
- ResNetBlock(c1, c2, s, e): relu(cv3(cv2(cv1(x))) + shortcut(x)), cv1 1x1, cv2 3x3/s, cv3 1x1 to e*c2 without
  activation; the shortcut is a 1x1/s Conv without activation (`shortcut.0`) when the stride or channels change.
The table row's args are the constructor's (c1 written in the table, nothing scaled); out channels c2 for the
first layer, e * c2 otherwise.
"""
from __future__ import annotations

import torch
from torch import nn
from torch.nn import functional as F

import layers
from zoo.yolo.registry import Block, TableError, register

from .conv import Conv, conv


class ResNetBlock(nn.Module):
    def __init__(self, c1: int, c2: int, s: int = 1, e: int = 4):
        super().__init__()
        c3 = e * c2
        self.cv1 = Conv(c1, c2, k=1, s=1, act=True)
        self.cv2 = Conv(c2, c2, k=3, s=s, p=1, act=True)
        self.cv3 = Conv(c2, c3, k=1, act=False)
        self.shortcut = nn.Sequential(Conv(c1, c3, k=1, s=s, act=False)) if s != 1 or c1 != c3 else nn.Identity()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.relu(self.cv3(self.cv2(self.cv1(x))) + self.shortcut(x))


def resnet_block(net, weights, prefix: str, x, c1: int, c2: int, s: int = 1, e: int = 4):
    c3 = e * c2
    y = conv(net, weights, f"{prefix}.cv1", x, c1, c2, 1, 1)
    y = conv(net, weights, f"{prefix}.cv2", y, c2, c2, 3, s, 1)
    y = conv(net, weights, f"{prefix}.cv3", y, c2, c3, 1, act=False)
    if s != 1 or c1 != c3:
        x = layers.rename(conv(net, weights, f"{prefix}.shortcut.0", x, c1, c3, 1, s, act=False), f"{prefix}.shortcut")
    return layers.activation(net, layers.add(net, y, x, f"{prefix}/add"), "relu", prefix)


class ResNetLayer(nn.Module):
    def __init__(self, c1: int, c2: int, s: int = 1, is_first: bool = False, n: int = 1, e: int = 4):
        super().__init__()
        self.is_first = is_first
        if is_first:
            self.layer = nn.Sequential(Conv(c1, c2, k=7, s=2, p=3, act=True),
                                       nn.MaxPool2d(kernel_size=3, stride=2, padding=1))
        else:
            self.layer = nn.Sequential(ResNetBlock(c1, c2, s, e=e),
                                       *(ResNetBlock(e * c2, c2, 1, e=e) for _ in range(n - 1)))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.layer(x)


def resnet_layer(net, weights, prefix: str, x, c1: int, c2: int, s: int = 1, is_first: bool = False, n: int = 1,
                 e: int = 4):
    if is_first:
        y = conv(net, weights, f"{prefix}.layer.0", x, c1, c2, 7, 2, 3)
        y = layers.max_pool(net, y, f"{prefix}.layer.1", 3, 2, 1)
    else:
        y = x
        for j in range(n):
            y = resnet_block(net, weights, f"{prefix}.layer.{j}", y, c1 if j == 0 else e * c2, c2, s if j == 0 else 1, e)
    return layers.rename(y, prefix)


def resnet_resolve(row) -> tuple[list, int]:
    args = list(row.args)
    if len(args) < 4 or not all(isinstance(a, int) for a in args[:3]):
        raise TableError(f"{row.where()}: ResNetLayer needs [c1, c2, s, is_first, n], got {args!r}")
    if args[0] != row.inputs[0]:
        raise TableError(f"{row.where()}: the table says {args[0]} input channels, the row before gives "
                         f"{row.inputs[0]}")
    e = args[5] if len(args) > 5 else 4
    return args, args[1] if args[3] else e * args[1]


register(Block("ResNetLayer", ResNetLayer, resnet_layer, resolve=resnet_resolve))
