"""The CSP family of the YOLO line: Bottleneck, C3 (YOLOv5 and the u-tables), C2f (YOLOv8), C3k and C3k2 (YOLO11).

Facts (upstream `nn/modules/block.py`): Bottleneck(c1, c2, shortcut, g, k=(3, 3), e=0.5) adds its input when shortcut
and c1 == c2; C3's bottlenecks are (1x1, 3x3) with e=1.0 and its concatenation puts the bottleneck branch first;
C2f splits cv1 in two halves and appends every bottleneck's output; C3k2 is C2f's layout with C3k(c, c, 2) or
Bottleneck(c, c, e=0.5) inside, or (YOLO26's `attn` argument, which wins over c3k) Sequential(Bottleneck(c, c),
PSABlock(c, 0.5, max(c // 64, 1) heads)).
"""
from __future__ import annotations

import torch
from torch import nn

import layers
from zoo.yolo.registry import Block, register, scaled

from .conv import Conv, conv
from .psa import PSABlock, psa_block


def _pair(k) -> tuple[int, int]:
    return (k, k) if isinstance(k, int) else tuple(k)


class Bottleneck(nn.Module):
    def __init__(self, c1: int, c2: int, shortcut: bool = True, g: int = 1, k=(3, 3), e: float = 0.5):
        super().__init__()
        k0, k1 = (_pair(v)[0] for v in k)
        c_ = int(c2 * e)
        self.cv1 = Conv(c1, c_, k0)
        self.cv2 = Conv(c_, c2, k1, g=g)
        self.add = shortcut and c1 == c2

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.cv2(self.cv1(x))
        return x + y if self.add else y


def bottleneck(net, weights, prefix: str, x, c1: int, c2: int, shortcut: bool = True, g: int = 1, k=(3, 3),
               e: float = 0.5):
    k0, k1 = (_pair(v)[0] for v in k)
    c_ = int(c2 * e)
    y = conv(net, weights, f"{prefix}.cv1", x, c1, c_, k0)
    y = conv(net, weights, f"{prefix}.cv2", y, c_, c2, k1, g=g)
    if shortcut and c1 == c2:
        return layers.add(net, x, y, prefix)
    return layers.rename(y, prefix)


class C3(nn.Module):
    kernels = (1, 3)  # of the bottlenecks; C3k's are (k, k)

    def __init__(self, c1: int, c2: int, n: int = 1, shortcut: bool = True, g: int = 1, e: float = 0.5):
        super().__init__()
        c_ = int(c2 * e)
        self.cv1 = Conv(c1, c_, 1)
        self.cv2 = Conv(c1, c_, 1)
        self.cv3 = Conv(2 * c_, c2, 1)
        self.m = nn.Sequential(*(Bottleneck(c_, c_, shortcut, g, k=self.kernels, e=1.0) for _ in range(n)))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.cv3(torch.cat((self.m(self.cv1(x)), self.cv2(x)), 1))


class C3k(C3):
    def __init__(self, c1: int, c2: int, n: int = 1, shortcut: bool = True, g: int = 1, e: float = 0.5, k: int = 3):
        self.kernels = (k, k)
        super().__init__(c1, c2, n, shortcut, g, e)


def c3(net, weights, prefix: str, x, c1: int, c2: int, n: int = 1, shortcut: bool = True, g: int = 1, e: float = 0.5,
       kernels=(1, 3)):
    c_ = int(c2 * e)
    y = conv(net, weights, f"{prefix}.cv1", x, c1, c_, 1)
    for i in range(n):
        y = bottleneck(net, weights, f"{prefix}.m.{i}", y, c_, c_, shortcut, g, kernels, 1.0)
    if n:
        layers.rename(y, f"{prefix}.m")
    side = conv(net, weights, f"{prefix}.cv2", x, c1, c_, 1)
    cat = layers.concat(net, [y, side], f"{prefix}/concat")
    return layers.rename(conv(net, weights, f"{prefix}.cv3", cat, 2 * c_, c2, 1), prefix)


def c3k(net, weights, prefix: str, x, c1: int, c2: int, n: int = 1, shortcut: bool = True, g: int = 1,
        e: float = 0.5, k: int = 3):
    return c3(net, weights, prefix, x, c1, c2, n, shortcut, g, e, (k, k))


class C2f(nn.Module):
    def __init__(self, c1: int, c2: int, n: int = 1, shortcut: bool = False, g: int = 1, e: float = 0.5):
        super().__init__()
        self.c = int(c2 * e)
        self.cv1 = Conv(c1, 2 * self.c, 1)
        self.cv2 = Conv((2 + n) * self.c, c2, 1)
        self.m = nn.ModuleList(self.inner(shortcut, g) for _ in range(n))

    def inner(self, shortcut: bool, g: int) -> nn.Module:
        return Bottleneck(self.c, self.c, shortcut, g, k=(3, 3), e=1.0)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = list(self.cv1(x).split((self.c, self.c), 1))
        for m in self.m:
            y.append(m(y[-1]))
        return self.cv2(torch.cat(y, 1))


class C3k2(C2f):
    def __init__(self, c1: int, c2: int, n: int = 1, c3k: bool = False, e: float = 0.5, attn: bool = False,
                 g: int = 1, shortcut: bool = True):
        self.c3k, self.attn = c3k, attn
        super().__init__(c1, c2, n, shortcut, g, e)

    def inner(self, shortcut: bool, g: int) -> nn.Module:
        if self.attn:
            return nn.Sequential(Bottleneck(self.c, self.c, shortcut, g),
                                 PSABlock(self.c, attn_ratio=0.5, num_heads=max(self.c // 64, 1)))
        return C3k(self.c, self.c, 2, shortcut, g) if self.c3k else Bottleneck(self.c, self.c, shortcut, g)


def c2f_layout(net, weights, prefix: str, x, c1: int, c2: int, n: int, e: float, inner):
    """cv1 split [a, b]; inner(name, last, c) for each of the n inner blocks, appended; cv2 over all pieces."""
    c = int(c2 * e)
    y = conv(net, weights, f"{prefix}.cv1", x, c1, 2 * c, 1)
    pieces = layers.split(net, y, (c, c), (f"{prefix}/split0", f"{prefix}/split1"))
    for i in range(n):
        pieces.append(inner(f"{prefix}.m.{i}", pieces[-1], c))
    cat = layers.concat(net, pieces, f"{prefix}/concat")
    return layers.rename(conv(net, weights, f"{prefix}.cv2", cat, (2 + n) * c, c2, 1), prefix)


def c2f(net, weights, prefix: str, x, c1: int, c2: int, n: int = 1, shortcut: bool = False, g: int = 1,
        e: float = 0.5):
    return c2f_layout(net, weights, prefix, x, c1, c2, n, e,
                      lambda name, y, c: bottleneck(net, weights, name, y, c, c, shortcut, g, (3, 3), 1.0))


def c3k2(net, weights, prefix: str, x, c1: int, c2: int, n: int = 1, c3k_: bool = False, e: float = 0.5,
         attn: bool = False, g: int = 1, shortcut: bool = True):
    def inner(name, y, c):
        if attn:
            y = bottleneck(net, weights, f"{name}.0", y, c, c, shortcut, g)
            return layers.rename(psa_block(net, weights, f"{name}.1", y, c, 0.5, max(c // 64, 1)), name)
        if c3k_:
            return c3k(net, weights, name, y, c, c, 2, shortcut, g)
        return bottleneck(net, weights, name, y, c, c, shortcut, g)

    return c2f_layout(net, weights, prefix, x, c1, c2, n, e, inner)


def c3k2_resolve(row):
    """Upstream turns C3k inside every C3k2 on at scales m, l and x, whatever the row says."""
    args, c2 = scaled(row)
    if row.scale in ("m", "l", "x"):
        args = [*args[:2], True, *args[3:]]   # c3k (before the walker inserts n)
    return args, c2


register(Block("Bottleneck", Bottleneck, bottleneck),
         Block("C3", C3, c3, repeats=True),
         Block("C3k", C3k, c3k, repeats=True),
         Block("C2f", C2f, c2f, repeats=True),
         Block("C3k2", C3k2, c3k2, resolve=c3k2_resolve, repeats=True))
