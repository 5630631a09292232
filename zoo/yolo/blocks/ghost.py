"""GhostConv, GhostBottleneck and C3Ghost: the blocks of the yolov8-ghost tables (facts: docs/yolo-tables.md,
read from ultralytics 8.4.190 `nn/modules/conv.py` and `nn/modules/block.py`).

A ghost convolution makes half of its output channels with an ordinary Conv and the other half from those with a
cheap depthwise 5x5 Conv, then concatenates the two halves. Its bottleneck is two ghost convolutions (the second
without activation) plus a shortcut, and C3Ghost is the C3 layout with ghost bottlenecks inside.
"""
from __future__ import annotations

import torch
from torch import nn

import layers
from zoo.yolo.blocks.conv import Conv, DWConv, conv, dwconv
from zoo.yolo.registry import Block, TableError, register


class GhostConv(nn.Module):
    """cv1 Conv(c1, c2/2, k, s, groups g) -> y; cv2 depthwise Conv(c2/2, c2/2, 5) on y; output cat(y, cv2(y))."""

    def __init__(self, c1: int, c2: int, k: int = 1, s: int = 1, g: int = 1, act=True):
        super().__init__()
        hidden = c2 // 2
        self.cv1 = Conv(c1, hidden, k, s, None, g, act=act)
        self.cv2 = Conv(hidden, hidden, 5, 1, None, hidden, act=act)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.cv1(x)
        return torch.cat((y, self.cv2(y)), 1)


def ghost_conv(net, weights, prefix: str, x, c1: int, c2: int, k: int = 1, s: int = 1, g: int = 1, act=True):
    hidden = c2 // 2
    y = conv(net, weights, f"{prefix}.cv1", x, c1, hidden, k, s, None, g, act=act)
    cheap = conv(net, weights, f"{prefix}.cv2", y, hidden, hidden, 5, 1, None, hidden, act=act)
    return layers.concat(net, [y, cheap], prefix)


class GhostBottleneck(nn.Module):
    """conv: GhostConv(c1, c2/2, 1) -> [DWConv(k, s), no activation, only when s == 2] -> GhostConv(c2/2, c2, 1)
    without activation; plus the input (s == 1) or shortcut: DWConv(c1, c1, k, s) -> Conv(c1, c2, 1), both without
    activation (s == 2). Index 1 of `conv` is an nn.Identity when s == 1, so state_dict keys are `conv.0` and
    `conv.2` then."""

    def __init__(self, c1: int, c2: int, k: int = 3, s: int = 1):
        super().__init__()
        _check_stride(s, c1, c2, "GhostBottleneck")
        hidden = c2 // 2
        self.conv = nn.Sequential(GhostConv(c1, hidden, 1, 1),
                                  DWConv(hidden, hidden, k, s, act=False) if s == 2 else nn.Identity(),
                                  GhostConv(hidden, c2, 1, 1, act=False))
        self.shortcut = (nn.Sequential(DWConv(c1, c1, k, s, act=False), Conv(c1, c2, 1, 1, act=False)) if s == 2
                         else nn.Identity())

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv(x) + self.shortcut(x)


def _check_stride(s: int, c1: int, c2: int, what: str) -> None:
    if s not in (1, 2):
        raise TableError(f"{what} stride {s}: only 1 and 2 exist")
    if s == 1 and c1 != c2:
        raise TableError(f"{what} with stride 1 adds its input: it needs c1 == c2, got {c1} and {c2}")


def ghost_bottleneck(net, weights, prefix: str, x, c1: int, c2: int, k: int = 3, s: int = 1):
    _check_stride(s, c1, c2, f"{prefix} (GhostBottleneck)")
    hidden = c2 // 2
    y = ghost_conv(net, weights, f"{prefix}.conv.0", x, c1, hidden, 1, 1)
    if s == 2:
        y = dwconv(net, weights, f"{prefix}.conv.1", y, hidden, hidden, k, s, act=False)
    y = layers.rename(ghost_conv(net, weights, f"{prefix}.conv.2", y, hidden, c2, 1, 1, act=False), f"{prefix}.conv")
    side = x
    if s == 2:
        side = dwconv(net, weights, f"{prefix}.shortcut.0", x, c1, c1, k, s, act=False)
        side = layers.rename(conv(net, weights, f"{prefix}.shortcut.1", side, c1, c2, 1, 1, act=False),
                             f"{prefix}.shortcut")
    return layers.add(net, y, side, prefix)


class C3Ghost(nn.Module):
    """The C3 layout, cv3(cat(m(cv1(x)), cv2(x))) with hidden c_ = int(c2 * e), whose `m` is n GhostBottleneck(c_,
    c_). `shortcut` and `g` are accepted as the table gives them and change nothing (a ghost bottleneck of stride 1
    always adds its input)."""

    def __init__(self, c1: int, c2: int, n: int = 1, shortcut: bool = True, g: int = 1, e: float = 0.5):
        super().__init__()
        hidden = int(c2 * e)
        self.cv1 = Conv(c1, hidden, 1, 1)
        self.cv2 = Conv(c1, hidden, 1, 1)
        self.cv3 = Conv(2 * hidden, c2, 1)
        self.m = nn.Sequential(*(GhostBottleneck(hidden, hidden) for _ in range(n)))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.cv3(torch.cat((self.m(self.cv1(x)), self.cv2(x)), 1))


def c3_ghost(net, weights, prefix: str, x, c1: int, c2: int, n: int = 1, shortcut: bool = True, g: int = 1,
             e: float = 0.5):
    hidden = int(c2 * e)
    y = conv(net, weights, f"{prefix}.cv1", x, c1, hidden, 1, 1)
    for i in range(n):
        y = ghost_bottleneck(net, weights, f"{prefix}.m.{i}", y, hidden, hidden)
    if n:
        layers.rename(y, f"{prefix}.m")
    side = conv(net, weights, f"{prefix}.cv2", x, c1, hidden, 1, 1)
    cat = layers.concat(net, [y, side], f"{prefix}/concat")
    return layers.rename(conv(net, weights, f"{prefix}.cv3", cat, 2 * hidden, c2, 1), prefix)


register(Block("GhostConv", GhostConv, ghost_conv),
         Block("GhostBottleneck", GhostBottleneck, ghost_bottleneck),
         Block("C3Ghost", C3Ghost, c3_ghost, repeats=True))
