"""YOLOv10's backbone and neck blocks: SCDown, CIB, C2fCIB and PSA (facts: docs/yolov10-v9.md, read from
ultralytics 8.4.190 `nn/modules/block.py`; the head, v10Detect, is zoo/yolo/blocks' end-to-end head).

- SCDown(c1, c2, k, s): a 1x1 Conv to c2, then a depthwise k x k Conv of stride s without activation.
- CIB(c1, c2, shortcut, e, lk): five convolutions in `cv1` (3x3 depthwise, 1x1 to 2c_, a 3x3 depthwise one or a
  RepVGGDW when lk, 1x1 to c2, 3x3 depthwise), c_ = int(c2 * e), plus the input when shortcut and c1 == c2.
- C2fCIB(c1, c2, n, shortcut, lk, g, e): C2f's layout with CIB(c, c, shortcut, e=1.0, lk) inside.
- PSA(c1, c2, e): cv1 splits into halves [a, b]; b += Attention(b) (heads = max(c // 64, 1)); b += ffn(b); cv2 over
  cat(a, b). The attention is C2PSA's (zoo/yolo/blocks/psa.py); PSA holds it directly (keys `attn.*`, `ffn.*`).
"""
from __future__ import annotations

import torch
from torch import nn

import layers
from zoo.yolo.registry import Block, TableError, register, scaled

from .conv import Conv, conv
from .csp import C2f, c2f_layout
from .psa import Attention, psa_block, split_attend_merge
from .rep import RepVGGDW, rep_vgg_dw


class SCDown(nn.Module):
    def __init__(self, c1: int, c2: int, k: int, s: int):
        super().__init__()
        self.cv1 = Conv(c1, c2, 1, 1)
        self.cv2 = Conv(c2, c2, k=k, s=s, g=c2, act=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.cv2(self.cv1(x))


def sc_down(net, weights, prefix: str, x, c1: int, c2: int, k: int, s: int):
    y = conv(net, weights, f"{prefix}.cv1", x, c1, c2, 1, 1)
    return layers.rename(conv(net, weights, f"{prefix}.cv2", y, c2, c2, k, s, g=c2, act=False), prefix)


class CIB(nn.Module):
    def __init__(self, c1: int, c2: int, shortcut: bool = True, e: float = 0.5, lk: bool = False):
        super().__init__()
        c_ = int(c2 * e)
        self.cv1 = nn.Sequential(
            Conv(c1, c1, 3, g=c1),
            Conv(c1, 2 * c_, 1),
            RepVGGDW(2 * c_) if lk else Conv(2 * c_, 2 * c_, 3, g=2 * c_),
            Conv(2 * c_, c2, 1),
            Conv(c2, c2, 3, g=c2),
        )
        self.add = shortcut and c1 == c2

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.cv1(x) if self.add else self.cv1(x)


def cib(net, weights, prefix: str, x, c1: int, c2: int, shortcut: bool = True, e: float = 0.5, lk: bool = False):
    c_ = int(c2 * e)
    p = f"{prefix}.cv1"
    y = conv(net, weights, f"{p}.0", x, c1, c1, 3, g=c1)
    y = conv(net, weights, f"{p}.1", y, c1, 2 * c_, 1)
    y = rep_vgg_dw(net, weights, f"{p}.2", y, 2 * c_) if lk else conv(net, weights, f"{p}.2", y, 2 * c_, 2 * c_, 3,
                                                                        g=2 * c_)
    y = conv(net, weights, f"{p}.3", y, 2 * c_, c2, 1)
    y = layers.rename(conv(net, weights, f"{p}.4", y, c2, c2, 3, g=c2), p)
    return layers.add(net, x, y, prefix) if shortcut and c1 == c2 else layers.rename(y, prefix)


class C2fCIB(C2f):
    def __init__(self, c1: int, c2: int, n: int = 1, shortcut: bool = False, lk: bool = False, g: int = 1,
                 e: float = 0.5):
        self.lk = lk
        super().__init__(c1, c2, n, shortcut, g, e)

    def inner(self, shortcut: bool, g: int) -> nn.Module:
        return CIB(self.c, self.c, shortcut, e=1.0, lk=self.lk)


def c2f_cib(net, weights, prefix: str, x, c1: int, c2: int, n: int = 1, shortcut: bool = False, lk: bool = False,
            g: int = 1, e: float = 0.5):
    return c2f_layout(net, weights, prefix, x, c1, c2, n, e,
                      lambda name, y, c: cib(net, weights, name, y, c, c, shortcut, 1.0, lk))


class PSA(nn.Module):
    def __init__(self, c1: int, c2: int, e: float = 0.5):
        super().__init__()
        if c1 != c2:
            raise TableError(f"PSA keeps its channels, but its input has {c1} and it asks {c2}")
        self.c = int(c1 * e)
        self.cv1 = Conv(c1, 2 * self.c, 1, 1)
        self.cv2 = Conv(2 * self.c, c1, 1)
        self.attn = Attention(self.c, attn_ratio=0.5, num_heads=max(self.c // 64, 1))
        self.ffn = nn.Sequential(Conv(self.c, self.c * 2, 1), Conv(self.c * 2, self.c, 1, act=False))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        a, b = self.cv1(x).split((self.c, self.c), dim=1)
        b = b + self.attn(b)
        b = b + self.ffn(b)
        return self.cv2(torch.cat((a, b), 1))


def psa(net, weights, prefix: str, x, c1: int, c2: int, e: float = 0.5):
    c = int(c1 * e)
    return split_attend_merge(net, weights, prefix, x, c1, c, lambda b: psa_block(
        net, weights, prefix, b, c, 0.5, max(c // 64, 1), out_name=f"{prefix}/add_ffn"))


def psa_resolve(row):
    args, c2 = scaled(row)
    if args[0] != c2:
        raise TableError(f"{row.where()}: PSA keeps its channels, but its input has {args[0]} and it asks {c2}")
    c = int(c2 * (args[2] if len(args) > 2 else 0.5))
    if c < 2 or c % max(c // 64, 1):
        raise TableError(f"{row.where()}: PSA's {c} hidden channels do not split into {max(c // 64, 1)} heads")
    return args, c2


register(Block("SCDown", SCDown, sc_down),
         Block("CIB", CIB, cib),
         Block("C2fCIB", C2fCIB, c2f_cib, repeats=True),
         Block("PSA", PSA, psa, resolve=psa_resolve))
