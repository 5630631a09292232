"""PyTorch reference of YOLOv5 v7.0 detection (P5 and P6), written from the facts in docs/yolov5.md.

No yaml, no eval, no torchvision: the graph is spelled out layer by layer. Attribute names are the official
``state_dict`` contract (``model.{i}.cv1.conv.weight``, ``model.24.anchors``, ...), so official checkpoints load with
``load_state_dict(strict=True)`` and the TensorRT builder can mirror each block by its prefix.

Every module of ``model`` carries ``.i`` (its index) and ``.f`` (where its input comes from: ``-1`` for the previous
layer, or a list of indices for a Concat/Detect), like upstream, so forward hooks and the builder can walk the graph.
"""

from __future__ import annotations

import math
from typing import Sequence

import torch
from torch import nn

from zoo.engine.model import batchnorm_statistics_from_, random_batchnorm_affine_, random_conv_

# BatchNorm settings that upstream's initialize_weights() applies to every BatchNorm2d. eps is not stored in the
# state_dict, so it must be hard-coded here (and in every builder that folds BN).
BN_EPS = 1e-3
BN_MOMENTUM = 0.03

# (depth_multiple, width_multiple) of the official variants; the same for the P6 ("n6" ...) models.
VARIANTS: dict[str, tuple[float, float]] = {
    "n": (0.33, 0.25),
    "s": (0.33, 0.50),
    "m": (0.67, 0.75),
    "l": (1.00, 1.00),
    "x": (1.33, 1.25),
}

# Default anchors in pixels, (w, h) per anchor, one row per level.
ANCHORS_P5: tuple[tuple[tuple[float, float], ...], ...] = (
    ((10, 13), (16, 30), (33, 23)),  # P3/8
    ((30, 61), (62, 45), (59, 119)),  # P4/16
    ((116, 90), (156, 198), (373, 326)),  # P5/32
)
ANCHORS_P6: tuple[tuple[tuple[float, float], ...], ...] = (
    ((19, 27), (44, 40), (38, 94)),  # P3/8
    ((96, 68), (86, 152), (180, 137)),  # P4/16
    ((140, 301), (303, 264), (238, 542)),  # P5/32
    ((436, 615), (739, 380), (925, 792)),  # P6/64
)
STRIDES_P5 = (8, 16, 32)
STRIDES_P6 = (8, 16, 32, 64)

# yaml repeat counts of the C3 layers, by layer index (before depth scaling).
C3_REPEATS_P5: dict[int, int] = {2: 3, 4: 6, 6: 9, 8: 3, 13: 3, 17: 3, 20: 3, 23: 3}
C3_REPEATS_P6: dict[int, int] = {2: 3, 4: 6, 6: 9, 8: 3, 10: 3, 15: 3, 19: 3, 23: 3, 26: 3, 29: 3, 32: 3}


def make_divisible(x: float, divisor: int = 8) -> int:
    """Smallest multiple of ``divisor`` that is >= x (upstream ``make_divisible``)."""
    return math.ceil(x / divisor) * divisor


def scale_width(c: int, width_multiple: float) -> int:
    """Channel count of a yaml width ``c`` (``get_width`` in tensorrtx)."""
    return make_divisible(c * width_multiple, 8)


def scale_depth(n: int, depth_multiple: float) -> int:
    """Repeat count of a yaml repeat ``n``; Python's round() is round-half-even, as upstream."""
    return max(round(n * depth_multiple), 1) if n > 1 else n


def parse_variant(variant: str) -> tuple[float, float, bool]:
    """'s' -> (0.33, 0.5, False); 's6' -> (0.33, 0.5, True). Accepts an optional 'yolov5' prefix."""
    v = variant.strip().lower()
    if v.startswith("yolov5"):
        v = v[len("yolov5"):]
    p6 = v.endswith("6")
    base = v[:-1] if p6 else v
    if base not in VARIANTS:
        known = ", ".join(list(VARIANTS) + [k + "6" for k in VARIANTS])
        raise ValueError(f"unknown YOLOv5 variant {variant!r}; known: {known}")
    gd, gw = VARIANTS[base]
    return gd, gw, p6


# ------------------------------------------------------------------------------------------------- blocks


class Conv(nn.Module):
    """Conv2d (no bias) -> BatchNorm2d(eps=1e-3) -> SiLU. Padding is k // 2 unless given."""

    def __init__(self, c1: int, c2: int, k: int = 1, s: int = 1, p: int | None = None, g: int = 1):
        super().__init__()
        self.conv = nn.Conv2d(c1, c2, k, s, k // 2 if p is None else p, groups=g, bias=False)
        self.bn = nn.BatchNorm2d(c2, eps=BN_EPS, momentum=BN_MOMENTUM)
        self.act = nn.SiLU()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.act(self.bn(self.conv(x)))


class Bottleneck(nn.Module):
    """1x1 Conv -> 3x3 Conv, plus the input when ``shortcut`` and c1 == c2."""

    def __init__(self, c1: int, c2: int, shortcut: bool = True, g: int = 1, e: float = 0.5):
        super().__init__()
        c_ = int(c2 * e)
        self.cv1 = Conv(c1, c_, 1, 1)
        self.cv2 = Conv(c_, c2, 3, 1, g=g)
        self.add = shortcut and c1 == c2

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.cv2(self.cv1(x))
        return x + y if self.add else y


class C3(nn.Module):
    """CSP block: cv3(cat(m(cv1(x)), cv2(x))). The bottleneck branch comes first in the concat."""

    def __init__(self, c1: int, c2: int, n: int = 1, shortcut: bool = True, g: int = 1, e: float = 0.5):
        super().__init__()
        c_ = int(c2 * e)
        self.cv1 = Conv(c1, c_, 1, 1)
        self.cv2 = Conv(c1, c_, 1, 1)
        self.cv3 = Conv(2 * c_, c2, 1)
        self.m = nn.Sequential(*(Bottleneck(c_, c_, shortcut, g, e=1.0) for _ in range(n)))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.cv3(torch.cat((self.m(self.cv1(x)), self.cv2(x)), 1))


class SPPF(nn.Module):
    """cv1, three chained k x k stride-1 max-pools, cv2 over cat(x, y1, y2, y3)."""

    def __init__(self, c1: int, c2: int, k: int = 5):
        super().__init__()
        c_ = c1 // 2
        self.cv1 = Conv(c1, c_, 1, 1)
        self.cv2 = Conv(c_ * 4, c2, 1, 1)
        self.m = nn.MaxPool2d(kernel_size=k, stride=1, padding=k // 2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.cv1(x)
        y1 = self.m(x)
        y2 = self.m(y1)
        return self.cv2(torch.cat((x, y1, y2, self.m(y2)), 1))


class Concat(nn.Module):
    """torch.cat over a list of tensors (no parameters; it exists so that its layer index has a module)."""

    def __init__(self, dimension: int = 1):
        super().__init__()
        self.d = dimension

    def forward(self, xs: Sequence[torch.Tensor]) -> torch.Tensor:
        return torch.cat(list(xs), self.d)


class Detect(nn.Module):
    """YOLOv5 anchor-based head: one 1x1 conv (with bias) per level, then the sigmoid decode.

    ``anchors`` (buffer, saved) is in grid units, shape (nl, na, 2); ``stride`` (buffer, not saved) is (nl,).
    """

    def __init__(self, nc: int, anchors_px: Sequence[Sequence[Sequence[float]]], ch: Sequence[int],
                 strides: Sequence[int]):
        super().__init__()
        self.nc = nc
        self.no = nc + 5
        self.nl = len(anchors_px)
        self.na = len(anchors_px[0])
        if len(ch) != self.nl or len(strides) != self.nl:
            raise ValueError(f"Detect: {self.nl} anchor levels but {len(ch)} inputs and {len(strides)} strides")
        stride = torch.tensor([float(s) for s in strides], dtype=torch.float32)
        anchors = torch.tensor([[list(map(float, a)) for a in lvl] for lvl in anchors_px], dtype=torch.float32)
        self.register_buffer("anchors", anchors.view(self.nl, self.na, 2) / stride.view(-1, 1, 1))
        self.register_buffer("stride", stride, persistent=False)
        self.m = nn.ModuleList(nn.Conv2d(c, self.no * self.na, 1) for c in ch)

    def raw(self, xs: Sequence[torch.Tensor]) -> list[torch.Tensor]:
        """The per-level conv outputs, (B, na*no, ny, nx); channel = anchor * no + field."""
        return [conv(x) for conv, x in zip(self.m, xs)]

    def _grids(self, i: int, ny: int, nx: int, dtype: torch.dtype) -> tuple[torch.Tensor, torch.Tensor]:
        d = self.anchors.device
        shape = (1, self.na, ny, nx, 2)
        yv, xv = torch.meshgrid(torch.arange(ny, device=d, dtype=dtype), torch.arange(nx, device=d, dtype=dtype),
                                indexing="ij")
        grid = torch.stack((xv, yv), 2).expand(shape) - 0.5
        anchor_grid = (self.anchors[i] * self.stride[i]).view(1, self.na, 1, 1, 2).expand(shape)
        return grid, anchor_grid

    def decode(self, raw: Sequence[torch.Tensor]) -> torch.Tensor:
        """Raw conv outputs -> (B, sum(na*ny*nx), 5+nc): xywh centre in input pixels, sigmoided obj and classes.

        Order: level (P3 first), then anchor, then y, then x.
        """
        z = []
        for i, t in enumerate(raw):
            bs, _, ny, nx = t.shape
            t = t.view(bs, self.na, self.no, ny, nx).permute(0, 1, 3, 4, 2).contiguous()
            grid, anchor_grid = self._grids(i, ny, nx, t.dtype)
            xy, wh, conf = t.sigmoid().split((2, 2, self.nc + 1), 4)
            xy = (xy * 2 + grid) * self.stride[i]
            wh = (wh * 2) ** 2 * anchor_grid
            z.append(torch.cat((xy, wh, conf), 4).view(bs, self.na * ny * nx, self.no))
        return torch.cat(z, 1)

    def forward(self, xs: Sequence[torch.Tensor]) -> torch.Tensor:
        return self.decode(self.raw(xs))


# ------------------------------------------------------------------------------------------------- model


class YoloV5(nn.Module):
    """YOLOv5 v7.0 detection model. ``forward(x)`` returns the decoded (B, N, 5+nc) tensor.

    ``anchors``: pixel anchors per level, ((w, h) x na) x nl; defaults to the official P5 or P6 anchors.
    ``forward`` decodes in train mode too (only BatchNorm behaves differently); there is no training output.
    """

    def __init__(self, num_classes: int = 80, depth_multiple: float = 0.33, width_multiple: float = 0.50,
                 p6: bool = False, anchors: Sequence[Sequence[Sequence[float]]] | None = None):
        super().__init__()
        self.num_classes = num_classes
        self.depth_multiple = depth_multiple
        self.width_multiple = width_multiple
        self.p6 = p6
        strides = STRIDES_P6 if p6 else STRIDES_P5
        if anchors is None:
            anchors = ANCHORS_P6 if p6 else ANCHORS_P5
        if len(anchors) != len(strides):
            raise ValueError(f"{'P6' if p6 else 'P5'} model needs {len(strides)} anchor levels, got {len(anchors)}")

        def w(c: int) -> int:
            return scale_width(c, width_multiple)

        def d(n: int) -> int:
            return scale_depth(n, depth_multiple)

        up = lambda: nn.Upsample(scale_factor=2.0, mode="nearest")  # noqa: E731
        if not p6:
            layers = [
                # backbone
                (-1, Conv(3, w(64), 6, 2, 2)),  # 0  P1/2
                (-1, Conv(w(64), w(128), 3, 2)),  # 1  P2/4
                (-1, C3(w(128), w(128), d(3))),  # 2
                (-1, Conv(w(128), w(256), 3, 2)),  # 3  P3/8
                (-1, C3(w(256), w(256), d(6))),  # 4
                (-1, Conv(w(256), w(512), 3, 2)),  # 5  P4/16
                (-1, C3(w(512), w(512), d(9))),  # 6
                (-1, Conv(w(512), w(1024), 3, 2)),  # 7  P5/32
                (-1, C3(w(1024), w(1024), d(3))),  # 8
                (-1, SPPF(w(1024), w(1024), 5)),  # 9
                # head
                (-1, Conv(w(1024), w(512), 1, 1)),  # 10
                (-1, up()),  # 11
                ([-1, 6], Concat(1)),  # 12
                (-1, C3(2 * w(512), w(512), d(3), False)),  # 13
                (-1, Conv(w(512), w(256), 1, 1)),  # 14
                (-1, up()),  # 15
                ([-1, 4], Concat(1)),  # 16
                (-1, C3(2 * w(256), w(256), d(3), False)),  # 17 (P3/8 out)
                (-1, Conv(w(256), w(256), 3, 2)),  # 18
                ([-1, 14], Concat(1)),  # 19
                (-1, C3(2 * w(256), w(512), d(3), False)),  # 20 (P4/16 out)
                (-1, Conv(w(512), w(512), 3, 2)),  # 21
                ([-1, 10], Concat(1)),  # 22
                (-1, C3(2 * w(512), w(1024), d(3), False)),  # 23 (P5/32 out)
                ([17, 20, 23], Detect(num_classes, anchors, (w(256), w(512), w(1024)), strides)),  # 24
            ]
        else:
            layers = [
                # backbone
                (-1, Conv(3, w(64), 6, 2, 2)),  # 0  P1/2
                (-1, Conv(w(64), w(128), 3, 2)),  # 1  P2/4
                (-1, C3(w(128), w(128), d(3))),  # 2
                (-1, Conv(w(128), w(256), 3, 2)),  # 3  P3/8
                (-1, C3(w(256), w(256), d(6))),  # 4
                (-1, Conv(w(256), w(512), 3, 2)),  # 5  P4/16
                (-1, C3(w(512), w(512), d(9))),  # 6
                (-1, Conv(w(512), w(768), 3, 2)),  # 7  P5/32
                (-1, C3(w(768), w(768), d(3))),  # 8
                (-1, Conv(w(768), w(1024), 3, 2)),  # 9  P6/64
                (-1, C3(w(1024), w(1024), d(3))),  # 10
                (-1, SPPF(w(1024), w(1024), 5)),  # 11
                # head
                (-1, Conv(w(1024), w(768), 1, 1)),  # 12
                (-1, up()),  # 13
                ([-1, 8], Concat(1)),  # 14
                (-1, C3(2 * w(768), w(768), d(3), False)),  # 15
                (-1, Conv(w(768), w(512), 1, 1)),  # 16
                (-1, up()),  # 17
                ([-1, 6], Concat(1)),  # 18
                (-1, C3(2 * w(512), w(512), d(3), False)),  # 19
                (-1, Conv(w(512), w(256), 1, 1)),  # 20
                (-1, up()),  # 21
                ([-1, 4], Concat(1)),  # 22
                (-1, C3(2 * w(256), w(256), d(3), False)),  # 23 (P3/8 out)
                (-1, Conv(w(256), w(256), 3, 2)),  # 24
                ([-1, 20], Concat(1)),  # 25
                (-1, C3(2 * w(256), w(512), d(3), False)),  # 26 (P4/16 out)
                (-1, Conv(w(512), w(512), 3, 2)),  # 27
                ([-1, 16], Concat(1)),  # 28
                (-1, C3(2 * w(512), w(768), d(3), False)),  # 29 (P5/32 out)
                (-1, Conv(w(768), w(768), 3, 2)),  # 30
                ([-1, 12], Concat(1)),  # 31
                (-1, C3(2 * w(768), w(1024), d(3), False)),  # 32 (P6/64 out)
                ([23, 26, 29, 32], Detect(num_classes, anchors, (w(256), w(512), w(768), w(1024)), strides)),  # 33
            ]
        for i, (f, m) in enumerate(layers):
            m.i, m.f = i, f
        self.model = nn.Sequential(*(m for _, m in layers))
        # Outputs that a later layer reads (upstream's `save` list).
        self.save = sorted({j for f, _ in layers if isinstance(f, list) for j in f if j != -1})

    @property
    def detect(self) -> Detect:
        return self.model[-1]

    def features(self, x: torch.Tensor) -> list[torch.Tensor]:
        """Run layers 0..N-1 and return the Detect inputs (P3, P4, P5[, P6])."""
        saved: dict[int, torch.Tensor] = {}
        for m in self.model[:-1]:
            if m.f == -1:
                x = m(x)
            else:
                x = m([x if j == -1 else saved[j] for j in m.f])
            if m.i in self.save:
                saved[m.i] = x
        return [saved[j] for j in self.detect.f]

    def raw_head_outputs(self, x: torch.Tensor) -> list[torch.Tensor]:
        """Per-level Detect conv outputs, (B, na*(5+nc), ny, nx), before any decode."""
        return self.detect.raw(self.features(x))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.detect(self.features(x))


# ------------------------------------------------------------------------------------------------- factories


def build_yolov5(variant: str, num_classes: int = 80, p6: bool = False,
                 anchors: Sequence[Sequence[Sequence[float]]] | None = None) -> YoloV5:
    """An untrained YoloV5 of a named variant: 'n', 's', 'm', 'l', 'x', or 'n6' ... ('6' means P6)."""
    gd, gw, v_p6 = parse_variant(variant)
    return YoloV5(num_classes, gd, gw, p6 or v_p6, anchors)


@torch.no_grad()
def randomize_(model: nn.Module, seed: int = 0, calib_size: int = 256) -> nn.Module:
    """Seeded random weights and non-trivial BatchNorm statistics that keep activations O(1) through any depth.

    Conv weights ~ N(0, 1/fan_in), biases ~ N(0, 0.1) (Detect: N(0, 1)); BN gamma ~ U(0.5, 1.5), beta ~ N(0, 0.2).
    Fixed-gain schemes either vanish or explode over the 20-40 convs of a YOLOv5, so the running statistics are set
    from one float64 forward pass over a seeded batch of [smooth random image, uniform noise image] at
    ``calib_size``, perturbed per channel: running_mean = mean + N(0, 0.1) * std, running_var = var * U(0.5, 2).
    No BatchNorm is an identity and none normalizes exactly. Measured RMS of every layer output stays within
    about 0.2..4 for n (up to ~30 for x) on noise or smooth inputs of 256..640, and objectness spreads over (0, 1).
    The float64 pass makes the result independent of the thread count. ``calib_size`` must be a multiple of the
    largest stride (64 for P6).
    """
    g = torch.Generator().manual_seed(seed)
    detect_convs = {id(c) for m in model.modules() if isinstance(m, Detect) for c in m.m}
    for m in model.modules():
        if isinstance(m, nn.Conv2d):
            random_conv_(m, g, 1.0 if id(m) in detect_convs else 0.1)
        elif isinstance(m, nn.BatchNorm2d):
            random_batchnorm_affine_(m, g)
    smooth = torch.rand(1, 3, 8, 8, generator=g, dtype=torch.float64)
    smooth = nn.functional.interpolate(smooth, size=(calib_size, calib_size), mode="bilinear", align_corners=False)
    noise = torch.rand(1, 3, calib_size, calib_size, generator=g, dtype=torch.float64)
    batchnorm_statistics_from_(model, torch.cat((smooth, noise)), g)
    return model


def random_yolov5(variant: str = "n", num_classes: int = 80, seed: int = 0, p6: bool = False) -> YoloV5:
    """A YoloV5 of ``variant`` with seeded random weights and randomized BatchNorm statistics, in eval mode."""
    return randomize_(build_yolov5(variant, num_classes, p6), seed).eval()
