"""HGStem, HGBlock and LightConv: the PP-HGNetV2 backbone of rtdetr-l and rtdetr-x (facts: docs/rtdetr.md, upstream
`nn/modules/block.py` and `conv.py`). Every Conv here has ReLU (not the table's default activation).

- HGStem(c1, cm, c2): stem1 3x3/2 -> pad right and bottom by 1 -> [stem2a 2x2 -> pad 1 -> stem2b 2x2] beside a 2x2
  stride-1 max pool with ceil_mode -> concat (pool first) -> stem3 3x3/2 -> stem4 1x1.
- HGBlock(c1, cm, c2, k, n, light, shortcut): n convs in a chain (Conv k x k, or LightConv: 1x1 without activation
  then a depthwise k x k), the input and every chain output concatenated, squeezed (`sc`, 1x1 to c2/2) and excited
  (`ec`, 1x1 to c2); plus the input when `shortcut` and c1 == c2.
The table row's args are [cm, c2, k, light, shortcut] (channels not scaled); n is the row's repeats.
"""
from __future__ import annotations

import torch
from torch import nn
from torch.nn import functional as F

import layers
from zoo.yolo.registry import Block, TableError, register

from .conv import Conv, DWConv, conv, dwconv


class HGStem(nn.Module):
    def __init__(self, c1: int, cm: int, c2: int):
        super().__init__()
        self.stem1 = Conv(c1, cm, 3, 2, act="relu")
        self.stem2a = Conv(cm, cm // 2, 2, 1, 0, act="relu")
        self.stem2b = Conv(cm // 2, cm, 2, 1, 0, act="relu")
        self.stem3 = Conv(cm * 2, cm, 3, 2, act="relu")
        self.stem4 = Conv(cm, c2, 1, 1, act="relu")
        self.pool = nn.MaxPool2d(kernel_size=2, stride=1, padding=0, ceil_mode=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = F.pad(self.stem1(x), [0, 1, 0, 1])
        x2 = self.stem2b(F.pad(self.stem2a(x), [0, 1, 0, 1]))
        return self.stem4(self.stem3(torch.cat([self.pool(x), x2], 1)))


def _pad_right_bottom(net, x, name: str):
    """F.pad(x, [0, 1, 0, 1]): one zero column on the right and one zero row at the bottom."""
    return layers.named(net.add_padding_nd(x, (0, 0), (1, 1)), name)


def hg_stem(net, weights, prefix: str, x, c1: int, cm: int, c2: int):
    x = _pad_right_bottom(net, conv(net, weights, f"{prefix}.stem1", x, c1, cm, 3, 2, act="relu"),
                          f"{prefix}/stem1_pad")
    x2 = conv(net, weights, f"{prefix}.stem2a", x, cm, cm // 2, 2, 1, 0, act="relu")
    x2 = _pad_right_bottom(net, x2, f"{prefix}/stem2a_pad")
    x2 = conv(net, weights, f"{prefix}.stem2b", x2, cm // 2, cm, 2, 1, 0, act="relu")
    x1 = layers.max_pool(net, x, f"{prefix}.pool", 2, 1, 0, ceil_mode=True)
    y = layers.concat(net, [x1, x2], f"{prefix}/concat")
    y = conv(net, weights, f"{prefix}.stem3", y, cm * 2, cm, 3, 2, act="relu")
    return layers.rename(conv(net, weights, f"{prefix}.stem4", y, cm, c2, 1, 1, act="relu"), prefix)


class LightConv(nn.Module):
    """1x1 Conv without activation, then a depthwise k x k Conv with `act`."""

    def __init__(self, c1: int, c2: int, k: int = 1, act="relu"):
        super().__init__()
        self.conv1 = Conv(c1, c2, 1, act=False)
        self.conv2 = DWConv(c2, c2, k, act=act)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv2(self.conv1(x))


def light_conv(net, weights, prefix: str, x, c1: int, c2: int, k: int = 1, act="relu"):
    y = conv(net, weights, f"{prefix}.conv1", x, c1, c2, 1, act=False)
    return layers.rename(dwconv(net, weights, f"{prefix}.conv2", y, c2, c2, k, act=act), prefix)


class HGBlock(nn.Module):
    def __init__(self, c1: int, cm: int, c2: int, k: int = 3, n: int = 6, lightconv: bool = False,
                 shortcut: bool = False):
        super().__init__()
        block = LightConv if lightconv else Conv
        self.m = nn.ModuleList(block(c1 if i == 0 else cm, cm, k=k, act="relu") for i in range(n))
        self.sc = Conv(c1 + n * cm, c2 // 2, 1, 1, act="relu")
        self.ec = Conv(c2 // 2, c2, 1, 1, act="relu")
        self.add = shortcut and c1 == c2

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = [x]
        y.extend(m(y[-1]) for m in self.m)
        y = self.ec(self.sc(torch.cat(y, 1)))
        return y + x if self.add else y


def hg_block(net, weights, prefix: str, x, c1: int, cm: int, c2: int, k: int = 3, n: int = 6,
             lightconv: bool = False, shortcut: bool = False):
    ys = [x]
    for i in range(n):
        where, c_in = f"{prefix}.m.{i}", c1 if i == 0 else cm
        ys.append(light_conv(net, weights, where, ys[-1], c_in, cm, k) if lightconv
                  else conv(net, weights, where, ys[-1], c_in, cm, k, act="relu"))
    y = conv(net, weights, f"{prefix}.sc", layers.concat(net, ys, f"{prefix}/concat"), c1 + n * cm, c2 // 2, 1,
             act="relu")
    y = conv(net, weights, f"{prefix}.ec", y, c2 // 2, c2, 1, act="relu")
    return layers.add(net, y, x, prefix) if shortcut and c1 == c2 else layers.rename(y, prefix)


def hg_resolve(row) -> tuple[list, int]:
    """[cm, c2, ...] -> (c1, cm, c2, ...), channels as the table writes them (upstream does not scale these)."""
    if len(row.args) < 2 or not all(isinstance(a, int) and a > 0 for a in row.args[:2]):
        raise TableError(f"{row.where()}: the first two arguments are middle and output channels, got {row.args!r}")
    return [row.inputs[0], *row.args], row.args[1]


def hg_block_resolve(row) -> tuple[list, int]:
    """HGBlock takes the row's repeat count as its fifth argument, after k (`repeats_at=4`), so k is required."""
    args, c2 = hg_resolve(row)
    if len(args) < 4 or not isinstance(args[3], int):
        raise TableError(f"{row.where()}: HGBlock needs [cm, c2, k, ...], got {row.args!r}")
    return args, c2


register(Block("HGStem", HGStem, hg_stem, resolve=hg_resolve),
         Block("HGBlock", HGBlock, hg_block, resolve=hg_block_resolve, repeats=True, repeats_at=4))
