"""YOLOv9's GELAN blocks: RepBottleneck, RepCSP, RepNCSPELAN4, ELAN1, AConv, ADown, SPPELAN, and the CBLinear /
CBFuse pair of yolov9e's second branch (facts: docs/yolov10-v9.md, read from ultralytics 8.4.190
`nn/modules/block.py` and `nn/tasks.py`).

- RepBottleneck: Bottleneck whose cv1 is a RepConv (zoo/yolo/blocks/rep.py); RepCSP: C3 with RepBottlenecks (e=1).
- RepNCSPELAN4(c1, c2, c3, c4, n): cv1 1x1 to c3, halves [a, b]; cv2 = [RepCSP(c3/2, c4, n), Conv 3x3] on b, cv3 =
  [RepCSP(c4, c4, n), Conv 3x3] on cv2's output; cv4 1x1 over cat(a, b, cv2, cv3). ELAN1: the same with one Conv 3x3
  each in cv2 and cv3. Only c2 follows the table's width; c3, c4 and n are taken as written.
- AConv: avg_pool(2, stride 1) then Conv 3x3 stride 2. ADown: avg_pool(2, stride 1), halves; the first through Conv
  3x3 stride 2, the second through max_pool(3, 2, 1) and Conv 1x1; concatenated.
- SPPELAN(c1, c2, c3, k=5): cv1 1x1 to c3, three max_pool(k, 1, k/2) in sequence, cv5 1x1 over all four.
- CBLinear(c1, c2s): one biased Conv2d to sum(c2s) channels, split into the c2s parts (a row with several outputs).
  CBFuse(idx): part idx[i] of each CBLinear row it names, resized (nearest) to the last input's size, summed with it.
"""
from __future__ import annotations

import torch
from torch import nn
from torch.nn import functional as F

import layers
from zoo.trt_api import trt
from zoo.yolo.registry import Block, TableError, register, same

from .conv import Conv, autopad, conv
from .csp import C3, Bottleneck
from .rep import RepConv, rep_conv


class RepBottleneck(Bottleneck):
    def __init__(self, c1: int, c2: int, shortcut: bool = True, g: int = 1, k=(3, 3), e: float = 0.5):
        super().__init__(c1, c2, shortcut, g, k, e)
        self.cv1 = RepConv(c1, int(c2 * e), k[0], 1)


def rep_bottleneck(net, weights, prefix: str, x, c1: int, c2: int, shortcut: bool = True, g: int = 1, k=(3, 3),
                   e: float = 0.5):
    c_ = int(c2 * e)
    y = rep_conv(net, weights, f"{prefix}.cv1", x, c1, c_, k[0], 1)
    y = conv(net, weights, f"{prefix}.cv2", y, c_, c2, k[1], g=g)
    return layers.add(net, x, y, prefix) if shortcut and c1 == c2 else layers.rename(y, prefix)


class RepCSP(C3):
    def __init__(self, c1: int, c2: int, n: int = 1, shortcut: bool = True, g: int = 1, e: float = 0.5):
        super().__init__(c1, c2, n, shortcut, g, e)
        c_ = int(c2 * e)
        self.m = nn.Sequential(*(RepBottleneck(c_, c_, shortcut, g, e=1.0) for _ in range(n)))


def rep_csp(net, weights, prefix: str, x, c1: int, c2: int, n: int = 1, shortcut: bool = True, g: int = 1,
            e: float = 0.5):
    c_ = int(c2 * e)
    y = conv(net, weights, f"{prefix}.cv1", x, c1, c_, 1)
    for i in range(n):
        y = rep_bottleneck(net, weights, f"{prefix}.m.{i}", y, c_, c_, shortcut, g, (3, 3), 1.0)
    if n:
        layers.rename(y, f"{prefix}.m")
    side = conv(net, weights, f"{prefix}.cv2", x, c1, c_, 1)
    cat = layers.concat(net, [y, side], f"{prefix}/concat")
    return layers.rename(conv(net, weights, f"{prefix}.cv3", cat, 2 * c_, c2, 1), prefix)


class RepNCSPELAN4(nn.Module):
    def __init__(self, c1: int, c2: int, c3: int, c4: int, n: int = 1):
        super().__init__()
        if c3 % 2:
            raise TableError(f"RepNCSPELAN4 splits its {c3} hidden channels in halves: an even count is needed")
        self.c = c3 // 2
        self.cv1 = Conv(c1, c3, 1, 1)
        self.cv2 = nn.Sequential(RepCSP(c3 // 2, c4, n), Conv(c4, c4, 3, 1))
        self.cv3 = nn.Sequential(RepCSP(c4, c4, n), Conv(c4, c4, 3, 1))
        self.cv4 = Conv(c3 + 2 * c4, c2, 1, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = list(self.cv1(x).chunk(2, 1))
        y.extend(m(y[-1]) for m in (self.cv2, self.cv3))
        return self.cv4(torch.cat(y, 1))


class ELAN1(RepNCSPELAN4):
    def __init__(self, c1: int, c2: int, c3: int, c4: int):
        nn.Module.__init__(self)  # RepNCSPELAN4's RepCSP stages would be built only to be replaced
        self.c = c3 // 2
        self.cv1 = Conv(c1, c3, 1, 1)
        self.cv2 = Conv(c3 // 2, c4, 3, 1)
        self.cv3 = Conv(c4, c4, 3, 1)
        self.cv4 = Conv(c3 + 2 * c4, c2, 1, 1)


def _elan(net, weights, prefix: str, x, c1: int, c2: int, c3: int, c4: int, stage):
    """cv1's halves, then stage(name, y, c_in) for cv2 and cv3, then cv4 over the four pieces."""
    if c3 % 2:
        raise TableError(f"{prefix}: the {c3} hidden channels do not split in halves")
    y = conv(net, weights, f"{prefix}.cv1", x, c1, c3, 1, 1)
    pieces = layers.split(net, y, (c3 // 2, c3 // 2), (f"{prefix}/split0", f"{prefix}/split1"))
    pieces.append(stage(f"{prefix}.cv2", pieces[-1], c3 // 2))
    pieces.append(stage(f"{prefix}.cv3", pieces[-1], c4))
    cat = layers.concat(net, pieces, f"{prefix}/concat")
    return layers.rename(conv(net, weights, f"{prefix}.cv4", cat, c3 + 2 * c4, c2, 1, 1), prefix)


def rep_ncsp_elan4(net, weights, prefix: str, x, c1: int, c2: int, c3: int, c4: int, n: int = 1):
    def stage(name, y, c_in):
        y = rep_csp(net, weights, f"{name}.0", y, c_in, c4, n)
        return layers.rename(conv(net, weights, f"{name}.1", y, c4, c4, 3, 1), name)

    return _elan(net, weights, prefix, x, c1, c2, c3, c4, stage)


def elan1(net, weights, prefix: str, x, c1: int, c2: int, c3: int, c4: int):
    return _elan(net, weights, prefix, x, c1, c2, c3, c4,
                 lambda name, y, c_in: conv(net, weights, name, y, c_in, c4, 3, 1))


class AConv(nn.Module):
    def __init__(self, c1: int, c2: int):
        super().__init__()
        self.cv1 = Conv(c1, c2, 3, 2, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.cv1(F.avg_pool2d(x, 2, 1, 0, False, True))


def a_conv(net, weights, prefix: str, x, c1: int, c2: int):
    pooled = layers.avg_pool(net, x, f"{prefix}/avg_pool", 2, 1, 0)
    return layers.rename(conv(net, weights, f"{prefix}.cv1", pooled, c1, c2, 3, 2, 1), prefix)


class ADown(nn.Module):
    def __init__(self, c1: int, c2: int):
        super().__init__()
        if c1 % 2 or c2 % 2:
            raise TableError(f"ADown({c1}, {c2}) splits its input and output in halves: even counts are needed")
        self.c = c2 // 2
        self.cv1 = Conv(c1 // 2, self.c, 3, 2, 1)
        self.cv2 = Conv(c1 // 2, self.c, 1, 1, 0)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x1, x2 = F.avg_pool2d(x, 2, 1, 0, False, True).chunk(2, 1)
        return torch.cat((self.cv1(x1), self.cv2(F.max_pool2d(x2, 3, 2, 1))), 1)


def a_down(net, weights, prefix: str, x, c1: int, c2: int):
    if c1 % 2 or c2 % 2:
        raise TableError(f"{prefix}: ADown({c1}, {c2}) splits its input and output in halves: even counts are needed")
    pooled = layers.avg_pool(net, x, f"{prefix}/avg_pool", 2, 1, 0)
    x1, x2 = layers.split(net, pooled, (c1 // 2, c1 // 2), (f"{prefix}/split0", f"{prefix}/split1"))
    y1 = conv(net, weights, f"{prefix}.cv1", x1, c1 // 2, c2 // 2, 3, 2, 1)
    y2 = layers.max_pool(net, x2, f"{prefix}/max_pool", 3, 2, 1)
    y2 = conv(net, weights, f"{prefix}.cv2", y2, c1 // 2, c2 // 2, 1, 1, 0)
    return layers.concat(net, [y1, y2], prefix)


class SPPELAN(nn.Module):
    def __init__(self, c1: int, c2: int, c3: int, k: int = 5):
        super().__init__()
        self.c = c3
        self.cv1 = Conv(c1, c3, 1, 1)
        self.cv2 = nn.MaxPool2d(kernel_size=k, stride=1, padding=k // 2)
        self.cv3 = nn.MaxPool2d(kernel_size=k, stride=1, padding=k // 2)
        self.cv4 = nn.MaxPool2d(kernel_size=k, stride=1, padding=k // 2)
        self.cv5 = Conv(4 * c3, c2, 1, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = [self.cv1(x)]
        y.extend(m(y[-1]) for m in (self.cv2, self.cv3, self.cv4))
        return self.cv5(torch.cat(y, 1))


def sppelan(net, weights, prefix: str, x, c1: int, c2: int, c3: int, k: int = 5):
    if k % 2 == 0:
        raise TableError(f"{prefix}: SPPELAN pools with an odd kernel, got {k}")
    pieces = [conv(net, weights, f"{prefix}.cv1", x, c1, c3, 1, 1)]
    for name in ("cv2", "cv3", "cv4"):
        pieces.append(layers.max_pool(net, pieces[-1], f"{prefix}.{name}", k, 1, k // 2))
    cat = layers.concat(net, pieces, f"{prefix}/concat")
    return layers.rename(conv(net, weights, f"{prefix}.cv5", cat, 4 * c3, c2, 1, 1), prefix)


def gelan_resolve(row):
    """RepNCSPELAN4, ELAN1, SPPELAN: c2 scaled as every Conv, the hidden counts after it as written."""
    if len(row.args) < 2 or not all(isinstance(a, int) for a in row.args):
        raise TableError(f"{row.where()}: expected [c2, hidden channels ...], got {row.args!r}")
    c2 = row.channels(row.args[0])
    return [row.inputs[0], c2, *row.args[1:]], c2


class CBLinear(nn.Module):
    def __init__(self, c1: int, c2s: list[int], k: int = 1, s: int = 1, p: int | None = None, g: int = 1):
        super().__init__()
        self.c2s = list(c2s)
        self.conv = nn.Conv2d(c1, sum(c2s), k, s, autopad(k, p), groups=g, bias=True)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, ...]:
        return self.conv(x).split(self.c2s, dim=1)


def cb_linear(net, weights, prefix: str, x, c1: int, c2s: list[int], k: int = 1, s: int = 1, p: int | None = None,
              g: int = 1):
    """The parts as a list; the first is named `prefix` (what a module hook sees of a tuple), the others
    `prefix/part<i>`."""
    y = layers.conv2d(net, weights, f"{prefix}.conv", x, sum(c2s), k, s, autopad(k, p), g)
    return layers.split(net, y, tuple(c2s), [prefix, *(f"{prefix}/part{i}" for i in range(1, len(c2s)))])


def cb_linear_resolve(row):
    """c2s: the yaml's list, each scaled by width as a Conv's channels would be (upstream takes them as written,
    which is the same at width 1.0, the only width its yolov9e table builds at: CBFuse adds them to scaled rows)."""
    c2s = row.args[0] if row.args else None
    if not (isinstance(c2s, list) and c2s and all(isinstance(c, int) and c > 0 for c in c2s)):
        raise TableError(f"{row.where()}: CBLinear takes a list of output channel counts, got {row.args!r}")
    c2s = [row.channels(c) for c in c2s]
    return [row.inputs[0], c2s, *row.args[1:]], c2s


class CBFuse(nn.Module):
    def __init__(self, idx: list[int]):
        super().__init__()
        self.idx = list(idx)

    def forward(self, xs: list) -> torch.Tensor:
        size = xs[-1].shape[2:]
        parts = [F.interpolate(x[self.idx[i]], size=size, mode="nearest") for i, x in enumerate(xs[:-1])]
        return torch.sum(torch.stack(parts + xs[-1:]), dim=0)


def cb_fuse(net, weights, prefix: str, xs, idx: list[int]):
    """Each chosen part brought to the last input's size by nearest resizing (up or down by a whole factor, where
    nearest resizing repeats each pixel or keeps every f-th one), then all summed in order."""
    target = xs[-1]
    total = None
    for i, (parts, j) in enumerate(zip(xs[:-1], idx)):
        part = parts[j]
        scales = [_whole_ratio(part.shape[a], target.shape[a]) for a in (2, 3)]
        if None in scales:
            raise TableError(f"{prefix}: input {i} is {tuple(part.shape[2:])}, not a whole factor away from the "
                             f"{tuple(target.shape[2:])} it is fused into")
        if scales != [1.0, 1.0]:
            resize = net.add_resize(part)
            resize.resize_mode = trt.InterpolationMode.NEAREST
            resize.scales = (1.0, 1.0, *scales)
            part = layers.named(resize, f"{prefix}/resize{i}")
        total = part if total is None else layers.add(net, total, part, f"{prefix}/add{i}")
    return layers.rename(target, prefix) if total is None else layers.add(net, total, target, prefix)


def _whole_ratio(size: int, target: int) -> float | None:
    """target / size when one divides the other (the resize scale), else None."""
    if target % size == 0:
        return float(target // size)
    if size % target == 0:
        return 1.0 / (size // target)
    return None


def cb_fuse_resolve(row):
    idx = row.args[0] if row.args else None
    sources = row.inputs[:-1]
    if not (isinstance(idx, list) and len(idx) == len(sources)):
        raise TableError(f"{row.where()}: CBFuse takes one part index per CBLinear row it names, got {row.args!r}")
    for i, (channels, j) in enumerate(zip(sources, idx)):
        if not isinstance(channels, list) or not isinstance(j, int) or not 0 <= j < len(channels):
            raise TableError(f"{row.where()}: input {i} has no part {j!r} (it is not a CBLinear row with that many)")
        if channels[j] != row.inputs[-1]:
            raise TableError(f"{row.where()}: part {j} of input {i} has {channels[j]} channels, the row it is added "
                             f"to has {row.inputs[-1]}")
    return [list(idx)], row.inputs[-1]


def identity(net, weights, prefix: str, x):
    return layers.named(net.add_identity(x), prefix)


register(Block("RepBottleneck", RepBottleneck, rep_bottleneck),
         Block("RepCSP", RepCSP, rep_csp, repeats=True),
         Block("RepNCSPELAN4", RepNCSPELAN4, rep_ncsp_elan4, resolve=gelan_resolve),
         Block("ELAN1", ELAN1, elan1, resolve=gelan_resolve),
         Block("AConv", AConv, a_conv),
         Block("ADown", ADown, a_down),
         Block("SPPELAN", SPPELAN, sppelan, resolve=gelan_resolve),
         Block("CBLinear", CBLinear, cb_linear, resolve=cb_linear_resolve),
         Block("CBFuse", CBFuse, cb_fuse, resolve=cb_fuse_resolve),
         Block("nn.Identity", nn.Identity, identity, resolve=same))
