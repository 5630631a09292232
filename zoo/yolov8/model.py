"""PyTorch reference of YOLOv8 and YOLO11 detection, written from the facts in docs/yolov8.md.

No ultralytics import, no yaml, no eval: the graph is spelled out layer by layer. Attribute names are the official
``state_dict`` contract (``model.2.m.0.cv1.conv.weight``, ``model.22.cv3.1.2.bias``, ``model.22.dfl.conv.weight``),
so official checkpoints load with ``load_state_dict(strict=True)`` and the TensorRT builder mirrors each block by its
prefix. Every module of ``model`` carries ``.i`` (its index) and ``.f`` (its inputs: ``-1`` or a list of indices).

The Detect head is written to be subclassed by the other tasks' heads (segment, pose, oriented boxes): per level a
box branch ``cv2[i]`` and a class branch ``cv3[i]`` (:meth:`Detect.branches`), then one decode over all levels
(:meth:`Detect.decode`: DFL expectation, anchor points, distance-to-box, times stride; sigmoid class scores).
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Sequence

import torch
from torch import nn

from zoo.engine.model import batchnorm_statistics_from_, random_batchnorm_affine_, random_conv_

# BatchNorm settings that ultralytics applies at model init; eps is not in the state_dict.
BN_EPS = 1e-3
BN_MOMENTUM = 0.03

FAMILIES = ("yolov8", "yolo11")
STRIDES = (8, 16, 32)
REG_MAX = 16

# scale -> (depth, width, max_channels), from the official yaml files
SCALES: dict[str, dict[str, tuple[float, float, int]]] = {
    "yolov8": {"n": (0.33, 0.25, 1024), "s": (0.33, 0.50, 1024), "m": (0.67, 0.75, 768),
               "l": (1.00, 1.00, 512), "x": (1.00, 1.25, 512)},
    "yolo11": {"n": (0.50, 0.25, 1024), "s": (0.50, 0.50, 1024), "m": (0.50, 1.00, 512),
               "l": (1.00, 1.00, 512), "x": (1.00, 1.50, 512)},
}


def make_divisible(x: float, divisor: int = 8) -> int:
    """Smallest multiple of ``divisor`` that is >= x."""
    return math.ceil(x / divisor) * divisor


@dataclass(frozen=True)
class Scaling:
    """How yaml channel counts and repeats become real ones: channels = make_divisible(min(c, max_channels) *
    width, 8); repeats n > 1 become max(round(n * depth), 1)."""

    depth: float
    width: float
    max_channels: int

    def channels(self, c: int) -> int:
        return make_divisible(min(c, self.max_channels) * self.width, 8)

    def repeats(self, n: int) -> int:
        return max(round(n * self.depth), 1) if n > 1 else n


# --------------------------------------------------------------------------------------------------- blocks


class Conv(nn.Module):
    """Conv2d(bias=False, padding k // 2) -> BatchNorm2d(eps 1e-3) -> SiLU (``act=False``: no activation)."""

    def __init__(self, c1: int, c2: int, k: int = 1, s: int = 1, g: int = 1, act: bool = True):
        super().__init__()
        self.conv = nn.Conv2d(c1, c2, k, s, k // 2, groups=g, bias=False)
        self.bn = nn.BatchNorm2d(c2, eps=BN_EPS, momentum=BN_MOMENTUM)
        self.act = nn.SiLU() if act else nn.Identity()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.act(self.bn(self.conv(x)))


class DWConv(Conv):
    """Conv with groups = gcd(c1, c2): depthwise when c1 == c2."""

    def __init__(self, c1: int, c2: int, k: int = 1, s: int = 1, act: bool = True):
        super().__init__(c1, c2, k, s, g=math.gcd(c1, c2), act=act)


class Bottleneck(nn.Module):
    """cv1 (k[0]) -> cv2 (k[1]), plus the input when ``shortcut`` and c1 == c2."""

    def __init__(self, c1: int, c2: int, shortcut: bool = True, k: tuple[int, int] = (3, 3), e: float = 0.5):
        super().__init__()
        c_ = int(c2 * e)
        self.cv1 = Conv(c1, c_, k[0])
        self.cv2 = Conv(c_, c2, k[1])
        self.add = shortcut and c1 == c2

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.cv2(self.cv1(x))
        return x + y if self.add else y


class C3k(nn.Module):
    """A C3 with k x k bottlenecks: cv3(cat(m(cv1(x)), cv2(x))), the bottleneck branch first."""

    def __init__(self, c1: int, c2: int, n: int = 2, shortcut: bool = True, e: float = 0.5, k: int = 3):
        super().__init__()
        c_ = int(c2 * e)
        self.cv1 = Conv(c1, c_, 1)
        self.cv2 = Conv(c1, c_, 1)
        self.cv3 = Conv(2 * c_, c2, 1)
        self.m = nn.Sequential(*(Bottleneck(c_, c_, shortcut, k=(k, k), e=1.0) for _ in range(n)))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.cv3(torch.cat((self.m(self.cv1(x)), self.cv2(x)), 1))


class C2f(nn.Module):
    """cv1 to 2c channels, split in halves [a, b]; each of ``m`` runs on the last piece and appends its output;
    cv2 over the concatenation [a, b, m0, m1, ...]."""

    def __init__(self, c1: int, c2: int, n: int = 1, shortcut: bool = False, e: float = 0.5):
        super().__init__()
        self.c = int(c2 * e)
        self.cv1 = Conv(c1, 2 * self.c, 1)
        self.cv2 = Conv((2 + n) * self.c, c2, 1)
        self.m = nn.ModuleList(self.inner(shortcut) for _ in range(n))

    def inner(self, shortcut: bool) -> nn.Module:
        return Bottleneck(self.c, self.c, shortcut, k=(3, 3), e=1.0)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = list(self.cv1(x).split((self.c, self.c), 1))
        for m in self.m:
            y.append(m(y[-1]))
        return self.cv2(torch.cat(y, 1))


class C3k2(C2f):
    """The C2f layout whose inner blocks are C3k(c, c, 2) (``c3k``) or Bottleneck(c, c, e=0.5)."""

    def __init__(self, c1: int, c2: int, n: int = 1, c3k: bool = False, e: float = 0.5, shortcut: bool = True):
        self.c3k = c3k
        super().__init__(c1, c2, n, shortcut, e)

    def inner(self, shortcut: bool) -> nn.Module:
        return C3k(self.c, self.c, 2, shortcut) if self.c3k else Bottleneck(self.c, self.c, shortcut, e=0.5)


class SPPF(nn.Module):
    """cv1, three chained k x k stride-1 max pools, cv2 over cat(x, y1, y2, y3). ``act``: cv1's activation
    (SiLU in released weights, none in models built by ultralytics 8.4)."""

    def __init__(self, c1: int, c2: int, k: int = 5, act: bool = True):
        super().__init__()
        c_ = c1 // 2
        self.cv1 = Conv(c1, c_, 1, act=act)
        self.cv2 = Conv(c_ * 4, c2, 1)
        self.m = nn.MaxPool2d(kernel_size=k, stride=1, padding=k // 2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.cv1(x)
        y1 = self.m(x)
        y2 = self.m(y1)
        return self.cv2(torch.cat((x, y1, y2, self.m(y2)), 1))


class Attention(nn.Module):
    """Multi-head self-attention over the H*W positions, with a depthwise positional conv on v."""

    def __init__(self, dim: int, num_heads: int = 8, attn_ratio: float = 0.5):
        super().__init__()
        self.num_heads = num_heads
        self.head_dim = dim // num_heads
        self.key_dim = int(self.head_dim * attn_ratio)
        self.scale = self.key_dim ** -0.5
        self.qkv = Conv(dim, dim + 2 * self.key_dim * num_heads, 1, act=False)
        self.proj = Conv(dim, dim, 1, act=False)
        self.pe = Conv(dim, dim, 3, g=dim, act=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, c, h, w = x.shape
        n = h * w
        qkv = self.qkv(x).view(b, self.num_heads, 2 * self.key_dim + self.head_dim, n)
        q, k, v = qkv.split((self.key_dim, self.key_dim, self.head_dim), dim=2)
        attn = ((q.transpose(-2, -1) @ k) * self.scale).softmax(dim=-1)               # (b, heads, n, n)
        y = (v @ attn.transpose(-2, -1)).view(b, c, h, w) + self.pe(v.reshape(b, c, h, w))
        return self.proj(y)


class PSABlock(nn.Module):
    """b + attn(b), then + ffn(b)."""

    def __init__(self, c: int, attn_ratio: float = 0.5, num_heads: int = 4):
        super().__init__()
        self.attn = Attention(c, num_heads, attn_ratio)
        self.ffn = nn.Sequential(Conv(c, 2 * c, 1), Conv(2 * c, c, 1, act=False))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x + self.attn(x)
        return x + self.ffn(x)


class C2PSA(nn.Module):
    """cv1 to 2c channels split [a, b]; b through n PSABlocks; cv2 over cat(a, b) back to c1 channels."""

    def __init__(self, c1: int, c2: int, n: int = 1, e: float = 0.5):
        super().__init__()
        if c1 != c2:
            raise ValueError(f"C2PSA needs c1 == c2, got {c1} and {c2}")
        self.c = int(c1 * e)
        self.cv1 = Conv(c1, 2 * self.c, 1)
        self.cv2 = Conv(2 * self.c, c1, 1)
        self.m = nn.Sequential(*(PSABlock(self.c, attn_ratio=0.5, num_heads=self.c // 64) for _ in range(n)))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        a, b = self.cv1(x).split((self.c, self.c), 1)
        return self.cv2(torch.cat((a, self.m(b)), 1))


class Concat(nn.Module):
    def __init__(self, dimension: int = 1):
        super().__init__()
        self.d = dimension

    def forward(self, xs: Sequence[torch.Tensor]) -> torch.Tensor:
        return torch.cat(list(xs), self.d)


# --------------------------------------------------------------------------------------------------- head


class DFL(nn.Module):
    """Distribution focal loss integral: softmax over reg_max bins, expectation with the fixed weights 0..reg_max-1
    (``conv.weight``, stored in the state_dict, not trained). (B, 4*reg_max, A) -> (B, 4, A)."""

    def __init__(self, reg_max: int = REG_MAX):
        super().__init__()
        self.reg_max = reg_max
        self.conv = nn.Conv2d(reg_max, 1, 1, bias=False).requires_grad_(False)
        with torch.no_grad():
            self.conv.weight.copy_(torch.arange(reg_max, dtype=torch.float32).view(1, reg_max, 1, 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, _, a = x.shape
        return self.conv(x.view(b, 4, self.reg_max, a).transpose(2, 1).softmax(1)).view(b, 4, a)


def anchor_points(sizes: Sequence[tuple[int, int]], strides: Sequence[int], dtype=torch.float32,
                  device=None) -> tuple[torch.Tensor, torch.Tensor]:
    """Cell centres (x + 0.5, y + 0.5) in grid units, (2, A), levels concatenated in order; and the stride of each
    anchor, (1, A). Row-major over (y, x) within a level, as the head's flattened outputs."""
    points, per_anchor = [], []
    for (h, w), s in zip(sizes, strides):
        ys = torch.arange(h, dtype=dtype, device=device) + 0.5
        xs = torch.arange(w, dtype=dtype, device=device) + 0.5
        gy, gx = torch.meshgrid(ys, xs, indexing="ij")
        points.append(torch.stack((gx.reshape(-1), gy.reshape(-1))))
        per_anchor.append(torch.full((1, h * w), float(s), dtype=dtype, device=device))
    return torch.cat(points, 1), torch.cat(per_anchor, 1)


def dist_to_xywh(distance: torch.Tensor, anchors: torch.Tensor) -> torch.Tensor:
    """(B, 4, A) distances (l, t, r, b) from (2, A) anchor points -> (B, 4, A) centre xy and wh, grid units."""
    lt, rb = distance.chunk(2, 1)
    x1y1, x2y2 = anchors - lt, anchors + rb
    return torch.cat(((x1y1 + x2y2) / 2, x2y2 - x1y1), 1)


class Detect(nn.Module):
    """Anchor-free detection head with DFL box regression.

    ``depthwise``: the class branch form: False is v8's plain one (Conv 3x3, Conv 3x3, Conv2d 1x1), True is 11's
    ([DWConv 3x3, Conv 1x1] twice, then Conv2d 1x1). Eval output (B, 4 + nc, A): xywh in input pixels, then the
    sigmoid class scores; no objectness.
    """

    def __init__(self, nc: int, ch: Sequence[int], strides: Sequence[int] = STRIDES, reg_max: int = REG_MAX,
                 depthwise: bool = True):
        super().__init__()
        if len(ch) != len(strides):
            raise ValueError(f"Detect: {len(ch)} inputs but {len(strides)} strides")
        self.nc, self.nl, self.reg_max = nc, len(ch), reg_max
        self.no = nc + 4 * reg_max
        self.strides = tuple(int(s) for s in strides)
        c2 = max(16, ch[0] // 4, reg_max * 4)
        c3 = max(ch[0], min(nc, 100))
        self.cv2 = nn.ModuleList(nn.Sequential(Conv(x, c2, 3), Conv(c2, c2, 3), nn.Conv2d(c2, 4 * reg_max, 1))
                                 for x in ch)
        if depthwise:
            self.cv3 = nn.ModuleList(nn.Sequential(nn.Sequential(DWConv(x, x, 3), Conv(x, c3, 1)),
                                                   nn.Sequential(DWConv(c3, c3, 3), Conv(c3, c3, 1)),
                                                   nn.Conv2d(c3, nc, 1)) for x in ch)
        else:
            self.cv3 = nn.ModuleList(nn.Sequential(Conv(x, c3, 3), Conv(c3, c3, 3), nn.Conv2d(c3, nc, 1))
                                     for x in ch)
        self.dfl = DFL(reg_max) if reg_max > 1 else nn.Identity()

    def branches(self, xs: Sequence[torch.Tensor]) -> list[tuple[torch.Tensor, torch.Tensor]]:
        """Per level (box logits (B, 4*reg_max, H, W), class logits (B, nc, H, W))."""
        return [(self.cv2[i](x), self.cv3[i](x)) for i, x in enumerate(xs)]

    def decode_boxes(self, box: torch.Tensor, anchors: torch.Tensor, strides: torch.Tensor) -> torch.Tensor:
        """(B, 4*reg_max, A) logits -> (B, 4, A) xywh in input pixels. Subclasses with rotated boxes override it."""
        return dist_to_xywh(self.dfl(box), anchors) * strides

    def decode(self, raw: Sequence[tuple[torch.Tensor, torch.Tensor]]) -> torch.Tensor:
        """Per-level (box, class) logits -> (B, 4 + nc, A)."""
        b = raw[0][0].shape[0]
        anchors, strides = anchor_points([tuple(box.shape[2:]) for box, _ in raw], self.strides,
                                         raw[0][0].dtype, raw[0][0].device)
        box = torch.cat([r.reshape(b, 4 * self.reg_max, -1) for r, _ in raw], 2)
        cls = torch.cat([c.reshape(b, self.nc, -1) for _, c in raw], 2)
        return torch.cat((self.decode_boxes(box, anchors, strides), cls.sigmoid()), 1)

    def forward(self, xs: Sequence[torch.Tensor]) -> torch.Tensor:
        return self.decode(self.branches(xs))


# --------------------------------------------------------------------------------------------------- model


@dataclass(frozen=True)
class Architecture:
    """What fixes the module's shapes. ``c3k``: per C3k2 layer index, whether its inner blocks are C3k (yolo11;
    None means the yaml's choice, all True at the m/l/x scales). ``depthwise_head``: the class-branch form."""

    family: str = "yolo11"
    depth: float = 0.50
    width: float = 0.25
    max_channels: int = 1024
    num_classes: int = 80
    reg_max: int = REG_MAX
    sppf_act: bool = True
    depthwise_head: bool | None = None  # None: the family's own (v8 plain, 11 depthwise)
    c3k: tuple[tuple[int, bool], ...] | None = None
    c2psa_repeats: int | None = None  # None: scaled from the yaml's 2

    @property
    def scaling(self) -> Scaling:
        return Scaling(self.depth, self.width, self.max_channels)

    @property
    def detect_index(self) -> int:
        return 22 if self.family == "yolov8" else 23


def yolo11_c3k(depth: float, width: float, max_channels: int) -> dict[int, bool]:
    """The yaml's c3k flags of yolo11's C3k2 layers; ultralytics forces them True at the m, l and x scales."""
    flags = {2: False, 4: False, 6: True, 8: True, 13: False, 16: False, 19: False, 22: True}
    if (depth, width, max_channels) in [SCALES["yolo11"][s] for s in "mlx"]:
        flags = dict.fromkeys(flags, True)
    return flags


def _layers_v8(a: Architecture, detect_cls) -> list[tuple]:
    w, d = a.scaling.channels, a.scaling.repeats
    up = lambda: nn.Upsample(scale_factor=2.0, mode="nearest")  # noqa: E731
    return [
        (-1, Conv(3, w(64), 3, 2)),                                   # 0  P1/2
        (-1, Conv(w(64), w(128), 3, 2)),                              # 1  P2/4
        (-1, C2f(w(128), w(128), d(3), True)),                        # 2
        (-1, Conv(w(128), w(256), 3, 2)),                             # 3  P3/8
        (-1, C2f(w(256), w(256), d(6), True)),                        # 4
        (-1, Conv(w(256), w(512), 3, 2)),                             # 5  P4/16
        (-1, C2f(w(512), w(512), d(6), True)),                        # 6
        (-1, Conv(w(512), w(1024), 3, 2)),                            # 7  P5/32
        (-1, C2f(w(1024), w(1024), d(3), True)),                      # 8
        (-1, SPPF(w(1024), w(1024), 5, a.sppf_act)),                  # 9
        (-1, up()),                                                   # 10
        ([-1, 6], Concat(1)),                                         # 11
        (-1, C2f(w(1024) + w(512), w(512), d(3))),                    # 12
        (-1, up()),                                                   # 13
        ([-1, 4], Concat(1)),                                         # 14
        (-1, C2f(w(512) + w(256), w(256), d(3))),                     # 15 (P3/8 out)
        (-1, Conv(w(256), w(256), 3, 2)),                             # 16
        ([-1, 12], Concat(1)),                                        # 17
        (-1, C2f(w(256) + w(512), w(512), d(3))),                     # 18 (P4/16 out)
        (-1, Conv(w(512), w(512), 3, 2)),                             # 19
        ([-1, 9], Concat(1)),                                         # 20
        (-1, C2f(w(512) + w(1024), w(1024), d(3))),                   # 21 (P5/32 out)
        ([15, 18, 21], detect_cls(a.num_classes, (w(256), w(512), w(1024)), STRIDES, a.reg_max,
                                  bool(a.depthwise_head))),           # 22
    ]


def _layers_11(a: Architecture, detect_cls) -> list[tuple]:
    w, d = a.scaling.channels, a.scaling.repeats
    c3k = dict(a.c3k) if a.c3k is not None else yolo11_c3k(a.depth, a.width, a.max_channels)
    up = lambda: nn.Upsample(scale_factor=2.0, mode="nearest")  # noqa: E731
    psa = d(2) if a.c2psa_repeats is None else a.c2psa_repeats
    return [
        (-1, Conv(3, w(64), 3, 2)),                                   # 0  P1/2
        (-1, Conv(w(64), w(128), 3, 2)),                              # 1  P2/4
        (-1, C3k2(w(128), w(256), d(2), c3k[2], 0.25)),               # 2
        (-1, Conv(w(256), w(256), 3, 2)),                             # 3  P3/8
        (-1, C3k2(w(256), w(512), d(2), c3k[4], 0.25)),               # 4
        (-1, Conv(w(512), w(512), 3, 2)),                             # 5  P4/16
        (-1, C3k2(w(512), w(512), d(2), c3k[6])),                     # 6
        (-1, Conv(w(512), w(1024), 3, 2)),                            # 7  P5/32
        (-1, C3k2(w(1024), w(1024), d(2), c3k[8])),                   # 8
        (-1, SPPF(w(1024), w(1024), 5, a.sppf_act)),                  # 9
        (-1, C2PSA(w(1024), w(1024), psa)),                           # 10
        (-1, up()),                                                   # 11
        ([-1, 6], Concat(1)),                                         # 12
        (-1, C3k2(w(1024) + w(512), w(512), d(2), c3k[13])),          # 13
        (-1, up()),                                                   # 14
        ([-1, 4], Concat(1)),                                         # 15
        (-1, C3k2(w(512) + w(512), w(256), d(2), c3k[16])),           # 16 (P3/8 out)
        (-1, Conv(w(256), w(256), 3, 2)),                             # 17
        ([-1, 13], Concat(1)),                                        # 18
        (-1, C3k2(w(256) + w(512), w(512), d(2), c3k[19])),           # 19 (P4/16 out)
        (-1, Conv(w(512), w(512), 3, 2)),                             # 20
        ([-1, 10], Concat(1)),                                        # 21
        (-1, C3k2(w(512) + w(1024), w(1024), d(2), c3k[22])),         # 22 (P5/32 out)
        ([16, 19, 22], detect_cls(a.num_classes, (w(256), w(512), w(1024)), STRIDES, a.reg_max,
                                  a.depthwise_head is not False)),    # 23
    ]


class YoloV8(nn.Module):
    """YOLOv8 or YOLO11 detection (``arch.family``). ``forward(x)`` returns (B, 4 + nc, A).

    ``head``: the head class (Detect, or a subclass of it for another task) called as
    ``head(nc, ch, strides, reg_max, depthwise)``.
    """

    def __init__(self, arch: Architecture = Architecture(), head=Detect):
        super().__init__()
        if arch.family not in FAMILIES:
            raise ValueError(f"unknown family {arch.family!r}; known: {FAMILIES}")
        self.arch = arch
        layers = (_layers_v8 if arch.family == "yolov8" else _layers_11)(arch, head)
        for i, (f, m) in enumerate(layers):
            m.i, m.f = i, f
        self.model = nn.Sequential(*(m for _, m in layers))
        self.save = sorted({j for f, _ in layers if isinstance(f, list) for j in f if j != -1})

    @property
    def head(self) -> Detect:
        return self.model[-1]

    def features(self, x: torch.Tensor) -> list[torch.Tensor]:
        """Run every layer before the head; return the head's inputs (P3, P4, P5)."""
        saved: dict[int, torch.Tensor] = {}
        for m in self.model[:-1]:
            x = m(x) if m.f == -1 else m([x if j == -1 else saved[j] for j in m.f])
            if m.i in self.save:
                saved[m.i] = x
        return [saved[j] for j in self.head.f]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.features(x))


# --------------------------------------------------------------------------------------------------- factories


def architecture(family: str, scale: str = "n", num_classes: int = 80, **kw) -> Architecture:
    """The Architecture of an official scale ('n', 's', 'm', 'l', 'x') of ``family`` ('yolov8' or 'yolo11')."""
    if family not in SCALES:
        raise ValueError(f"unknown family {family!r}; known: {FAMILIES}")
    if scale not in SCALES[family]:
        raise ValueError(f"unknown {family} scale {scale!r}; known: {', '.join(SCALES[family])}")
    depth, width, max_channels = SCALES[family][scale]
    return Architecture(family, depth, width, max_channels, num_classes, **kw)


@torch.no_grad()
def randomize_(model: nn.Module, seed: int = 0, calib_size: int = 256) -> nn.Module:
    """Seeded random weights and BatchNorm statistics that keep activations O(1) through the whole depth.

    As zoo.yolov5.model.randomize_: conv weights ~ N(0, 1/fan_in), biases ~ N(0, 0.1) (box outputs: N(0, 1);
    class outputs: N(-4.5, 0.5), and their weights scaled and shifted so that the logits are centred with spread 1
    on the calibration images: a few % of the cells have a class above 0.25, as a trained detector has few);
    BN gamma ~ U(0.5, 1.5), beta ~ N(0, 0.2); running statistics from one float64 pass over [smooth image, five
    letterboxed synthetic scenes] at ``calib_size`` (smaller sizes give P5 too few positions for sane statistics),
    perturbed per channel.
    DFL's fixed 0..reg_max-1 weights are kept.
    """
    g = torch.Generator().manual_seed(seed)
    heads = [m for m in model.modules() if isinstance(m, Detect)]
    head_outputs = {id(seq[-1]) for h in heads for seq in list(h.cv2) + list(h.cv3)}
    class_outputs = {id(seq[-1]) for h in heads for seq in h.cv3}
    fixed = {id(h.dfl.conv) for h in heads if isinstance(h.dfl, DFL)}
    for m in model.modules():
        if isinstance(m, nn.Conv2d) and id(m) not in fixed:
            if id(m) in class_outputs:  # few cells above a class threshold, as a trained detector has
                random_conv_(m, g, bias_std=0.5, bias_mean=-4.5)
            else:
                random_conv_(m, g, 1.0 if id(m) in head_outputs else 0.1)
        elif isinstance(m, nn.BatchNorm2d):
            random_batchnorm_affine_(m, g)

    from zoo.vision.letterbox import preprocess
    from zoo.vision.synthetic import draw_scene, scene_sizes

    smooth = torch.rand(1, 3, 8, 8, generator=g, dtype=torch.float64)
    smooth = nn.functional.interpolate(smooth, size=(calib_size, calib_size), mode="bilinear", align_corners=False)
    scenes = preprocess([draw_scene(h, w, seed + i) for i, (h, w) in enumerate(scene_sizes(5, seed))],
                        (calib_size, calib_size))[0]
    noise = torch.from_numpy(scenes).to(torch.float64)  # letterboxed synthetic scenes: what the model is fed
    spread: dict[int, tuple[torch.Tensor, float]] = {}

    def measure(conv: nn.Conv2d, _inputs, output: torch.Tensor) -> None:
        raw = output - conv.bias.view(1, -1, 1, 1)
        spread[id(conv)] = raw.mean((0, 2, 3)), float(raw.std())

    class_convs = [m for m in model.modules() if id(m) in class_outputs]
    batchnorm_statistics_from_(model, torch.cat((smooth, noise)), g, [(conv, measure) for conv in class_convs])
    for conv in class_convs:  # centred logits of unit spread on every level, whatever the depth before them
        mean, std = spread[id(conv)]
        std = max(std, 1e-6)
        conv.weight.div_(std)
        conv.bias.sub_((mean / std).to(conv.bias.dtype))
    return model


def random_yolo(family: str = "yolo11", scale: str = "n", num_classes: int = 80, seed: int = 0,
                calib_size: int = 256, **kw) -> YoloV8:
    """A model of an official scale with seeded random weights and randomized BatchNorm statistics, in eval mode."""
    return randomize_(YoloV8(architecture(family, scale, num_classes, **kw)), seed, calib_size).eval()
