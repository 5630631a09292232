"""The anchor-free heads of the YOLO line (YOLOv8, YOLO11, the u-tables): Detect with DFL box regression and its
task forms Segment (+ Proto), Pose and OBB (upstream `nn/modules/head.py`).

Per level, `cv2[i]` gives 4 * reg_max box logits and `cv3[i]` nc class logits: v8's plain form (Conv 3x3, Conv 3x3,
Conv2d 1x1), or YOLO11's ([DWConv 3x3, Conv 1x1] twice, Conv2d 1x1) when the table is not `legacy` (it has a C3k2).
c2 = max(16, ch[0] / 4, 4 reg_max), c3 = max(ch[0], min(nc, 100)). The decode: DFL (softmax over reg_max bins
times the bin values `dfl.conv.weight`), anchor points at cell centres, distances (l, t, r, b) to xywh, times
stride; sigmoid scores: (B, 4 + nc, A). On the network it is the `zoo::dfl_decode` plugin (`Options.decode ==
"plugin"`) or plain layers, always in FP32. The task forms add `cv4[i]` (Conv 3x3, Conv 3x3, Conv2d 1x1) for mask
coefficients (raw; plus `proto` at 1/4 of the input), keypoints (x = (raw * 2 + cell) * stride, visibility
sigmoid) or the angle ((sigmoid - 0.25) * pi, the box's centre offset turned around its anchor).
"""
from __future__ import annotations

import math
from typing import Sequence

import numpy as np
import torch
from torch import nn

import layers
from plugins.dfl_decode import add_dfl_decode
from zoo.trt_api import trt
from zoo.yolo.registry import Block, TableError, options, register

from .conv import Conv, DWConv, conv, dwconv
from .end2end import select_rows, select_rows_network

DECODES = ("plugin", "layers")
MODERN = ("C3k2", "A2C2f")  # a table with one of these has YOLO11's depthwise class branch


# ----------------------------------------------------------------------------------------- reference modules


class DFL(nn.Module):
    """(B, 4 reg_max, A) -> (B, 4, A): softmax over the bins, expectation with the fixed `conv.weight` 0..reg_max-1."""

    def __init__(self, reg_max: int = 16):
        super().__init__()
        self.reg_max = reg_max
        self.conv = nn.Conv2d(reg_max, 1, 1, bias=False).requires_grad_(False)
        with torch.no_grad():
            self.conv.weight.copy_(torch.arange(reg_max, dtype=torch.float32).view(1, reg_max, 1, 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, _, a = x.shape
        return self.conv(x.view(b, 4, self.reg_max, a).transpose(2, 1).softmax(1)).view(b, 4, a)


def anchor_points(sizes, strides, dtype=torch.float32, device=None) -> tuple[torch.Tensor, torch.Tensor]:
    """Cell centres (x + 0.5, y + 0.5) in grid units (2, A), levels in order, rows then columns; stride per anchor
    (1, A)."""
    points, per_anchor = [], []
    for (h, w), s in zip(sizes, strides):
        ys = torch.arange(h, dtype=dtype, device=device) + 0.5
        xs = torch.arange(w, dtype=dtype, device=device) + 0.5
        gy, gx = torch.meshgrid(ys, xs, indexing="ij")
        points.append(torch.stack((gx.reshape(-1), gy.reshape(-1))))
        per_anchor.append(torch.full((1, h * w), float(s), dtype=dtype, device=device))
    return torch.cat(points, 1), torch.cat(per_anchor, 1)


def dist_to_xywh(distance: torch.Tensor, anchors: torch.Tensor) -> torch.Tensor:
    lt, rb = distance.chunk(2, 1)
    x1y1, x2y2 = anchors - lt, anchors + rb
    return torch.cat(((x1y1 + x2y2) / 2, x2y2 - x1y1), 1)


def _extra_branch(ch: Sequence[int], hidden: int, outputs: int) -> nn.ModuleList:
    return nn.ModuleList(nn.Sequential(Conv(x, hidden, 3), Conv(hidden, hidden, 3), nn.Conv2d(hidden, outputs, 1))
                         for x in ch)


def _flat(outputs: list[torch.Tensor]) -> torch.Tensor:
    return torch.cat([o.reshape(o.shape[0], o.shape[1], -1) for o in outputs], 2)


def dist_to_xyxy(distance: torch.Tensor, anchors: torch.Tensor) -> torch.Tensor:
    lt, rb = distance.chunk(2, 1)
    return torch.cat((anchors - lt, anchors + rb), 1)


def uses_one2one(end2end: bool, one2many: bool) -> bool:
    """Which branch a head runs: `Options.head` ("one2one", "one2many", or "auto": the one-to-one branch when the
    weights have it); a branch the weights do not have is one line."""
    wanted = options().head
    if wanted == "one2one" and not end2end:
        raise TableError("--head one2one: these weights have no one-to-one (end-to-end) branch")
    if wanted == "one2many" and not one2many:
        raise TableError("--head one2many: these weights hold only the one-to-one branch (fused end to end)")
    return end2end and wanted != "one2many"


class Detect(nn.Module):
    """Eval output (B, 4 + nc, A): xywh in input pixels, then the sigmoid class scores; no objectness. The strides
    are the table's (`Options.strides`, set by the walker). With `end2end` the head also holds the one-to-one
    branches `one2one_cv2`/`one2one_cv3` (YOLOv10, YOLO26; `one2many` False: a fused file holds only those); when it
    runs them, boxes are xyxy and the output is the end-to-end rows (B, min(max_det, A), 6) (zoo.yolo.blocks.end2end).
    `training`: the parts only training runs (YOLO26's semseg, sigma and flow) are in the weights."""

    branch_names = ("cv2", "cv3")

    def __init__(self, nc: int, ch: Sequence[int], legacy: bool = False, reg_max: int = 16, end2end: bool = False,
                 one2many: bool = True, training: bool = True):
        super().__init__()
        self.nc, self.nl, self.reg_max, self.legacy = nc, len(ch), reg_max, legacy
        self.strides = tuple(options().strides) or (8, 16, 32)[:len(ch)]
        self.one2one, self.max_det = uses_one2one(end2end, one2many), options().max_det
        c2, c3 = head_channels(ch[0], nc, reg_max)
        for prefix in [p for p, present in (("", one2many), ("one2one_", end2end)) if present]:
            setattr(self, f"{prefix}cv2", nn.ModuleList(
                nn.Sequential(Conv(x, c2, 3), Conv(c2, c2, 3), nn.Conv2d(c2, 4 * reg_max, 1)) for x in ch))
            setattr(self, f"{prefix}cv3", self._class_branches(ch, c3, nc, legacy))
        self.dfl = DFL(reg_max) if reg_max > 1 else nn.Identity()

    @staticmethod
    def _class_branches(ch, c3: int, nc: int, legacy: bool) -> nn.ModuleList:
        if legacy:
            return nn.ModuleList(nn.Sequential(Conv(x, c3, 3), Conv(c3, c3, 3), nn.Conv2d(c3, nc, 1)) for x in ch)
        return nn.ModuleList(nn.Sequential(nn.Sequential(DWConv(x, x, 3), Conv(x, c3, 1)),
                                           nn.Sequential(DWConv(c3, c3, 3), Conv(c3, c3, 1)),
                                           nn.Conv2d(c3, nc, 1)) for x in ch)

    def add_branches(self, name: str, end2end: bool, one2many: bool, make) -> None:
        """A task branch (cv4, ...) for each branch set the weights hold: `name` and `one2one_<name>`."""
        for prefix in [p for p, present in (("", one2many), ("one2one_", end2end)) if present]:
            setattr(self, f"{prefix}{name}", make())

    def branch(self, name: str) -> nn.ModuleList:
        return getattr(self, f"one2one_{name}" if self.one2one else name)

    def branches(self, xs):
        return [(self.branch("cv2")[i](x), self.branch("cv3")[i](x)) for i, x in enumerate(xs)]

    def decode_boxes(self, box, anchors, strides):
        return (dist_to_xyxy if self.one2one else dist_to_xywh)(self.dfl(box), anchors) * strides

    def decode(self, raw):
        b = raw[0][0].shape[0]
        anchors, strides = anchor_points([tuple(box.shape[2:]) for box, _ in raw], self.strides,
                                         raw[0][0].dtype, raw[0][0].device)
        box = torch.cat([r.reshape(b, 4 * self.reg_max, -1) for r, _ in raw], 2)
        cls = torch.cat([c.reshape(b, self.nc, -1) for _, c in raw], 2)
        return torch.cat((self.decode_boxes(box, anchors, strides), cls.sigmoid()), 1)

    def finish(self, predictions):
        """The end-to-end rows when the one-to-one branch runs; the dense predictions otherwise."""
        return select_rows(predictions, self.nc, self.max_det) if self.one2one else predictions

    def forward(self, xs):
        return self.finish(self.decode(self.branches(xs)))


class Proto(nn.Module):
    """cv1 3x3 -> ConvTranspose2d(2, stride 2, bias) -> cv2 3x3 -> cv3 1x1: nm masks at 1/4 of the input."""

    def __init__(self, c1: int, c_: int = 256, c2: int = 32):
        super().__init__()
        self.cv1 = Conv(c1, c_, 3)
        self.upsample = nn.ConvTranspose2d(c_, c_, 2, 2, 0, bias=True)
        self.cv2 = Conv(c_, c_, 3)
        self.cv3 = Conv(c_, c2)

    def forward(self, x):
        return self.cv3(self.cv2(self.upsample(self.cv1(x))))


class Proto26(Proto):
    """YOLO26's: every level refined to ch[0] channels (`feat_refine`, 1x1), upsampled (nearest) to P3 and summed,
    `feat_fuse` 3x3 to c_, then Proto. `semseg` is training's (auxiliary semantic logits), absent when fused."""

    def __init__(self, ch: Sequence[int], c_: int = 256, c2: int = 32, nc: int = 80, training: bool = True):
        super().__init__(c_, c_, c2)
        self.feat_refine = nn.ModuleList(Conv(x, ch[0], 1) for x in ch[1:])
        self.feat_fuse = Conv(ch[0], c_, 3)
        if training:
            self.semseg = nn.Sequential(Conv(ch[0], c_, 3), Conv(c_, c_, 3), nn.Conv2d(c_, nc, 1))

    def forward(self, xs):
        feat = xs[0]
        for i, refine in enumerate(self.feat_refine):
            feat = feat + nn.functional.interpolate(refine(xs[i + 1]), scale_factor=2 ** (i + 1), mode="nearest")
        return super().forward(self.feat_fuse(feat))


class Segment(Detect):
    """forward: ((B, 4 + nc + nm, A) or the end-to-end rows (B, k, 6 + nm), protos (B, nm, H/4, W/4))."""

    def __init__(self, nc: int, nm: int, npr: int, ch: Sequence[int], legacy: bool = False, reg_max: int = 16,
                 end2end: bool = False, one2many: bool = True, training: bool = True):
        super().__init__(nc, ch, legacy, reg_max, end2end, one2many, training)
        self.nm, self.npr = nm, npr
        self.proto = self.make_proto(ch, npr, nm, nc, training)
        self.add_branches("cv4", end2end, one2many, lambda: _extra_branch(ch, max(ch[0] // 4, nm), nm))

    def make_proto(self, ch, npr, nm, nc, training):
        return Proto(ch[0], npr, nm)

    def protos(self, xs):
        return self.proto(xs[0])

    def forward(self, xs):
        coefficients = _flat([branch(x) for branch, x in zip(self.branch("cv4"), xs)])
        return self.finish(torch.cat((self.decode(self.branches(xs)), coefficients), 1)), self.protos(xs)


class Segment26(Segment):
    """Segment with Proto26 (all levels into the prototypes)."""

    def make_proto(self, ch, npr, nm, nc, training):
        return Proto26(ch, npr, nm, nc, training)

    def protos(self, xs):
        return self.proto(xs)


class Pose(Detect):
    """forward: (B, 4 + nc + K*D, A) (or the end-to-end rows); channel k*D + d is dimension d of keypoint k, in input
    pixels: x = (raw * 2 + cell corner) * stride, visibility sigmoid."""

    def __init__(self, nc: int, kpt_shape, ch: Sequence[int], legacy: bool = False, reg_max: int = 16,
                 end2end: bool = False, one2many: bool = True, training: bool = True):
        super().__init__(nc, ch, legacy, reg_max, end2end, one2many, training)
        self.kpt_shape = tuple(kpt_shape)
        self.nk = self.kpt_shape[0] * self.kpt_shape[1]
        self.make_keypoint_branches(ch, end2end, one2many, training)

    def make_keypoint_branches(self, ch, end2end, one2many, training):
        self.add_branches("cv4", end2end, one2many, lambda: _extra_branch(ch, max(ch[0] // 4, self.nk), self.nk))

    def raw_keypoints(self, xs):
        return _flat([branch(x) for branch, x in zip(self.branch("cv4"), xs)])

    gain, cell = 2.0, -0.5     # x = (raw * gain + anchor + cell) * stride; YOLO26: raw + anchor

    def decode_keypoints(self, raw, sizes):
        anchors, strides = anchor_points(sizes, self.strides, raw.dtype, raw.device)
        d = self.kpt_shape[1]
        y = raw.clone()
        if d == 3:
            y[:, 2::3] = raw[:, 2::3].sigmoid()
        y[:, 0::d] = (raw[:, 0::d] * self.gain + (anchors[0] + self.cell)) * strides
        y[:, 1::d] = (raw[:, 1::d] * self.gain + (anchors[1] + self.cell)) * strides
        return y

    def forward(self, xs):
        keypoints = self.decode_keypoints(self.raw_keypoints(xs), [tuple(x.shape[2:]) for x in xs])
        return self.finish(torch.cat((self.decode(self.branches(xs)), keypoints), 1))


class RealNVP(nn.Module):
    """YOLO26 pose's normalizing flow (training's keypoint likelihood): held so the weights load, never run."""

    def __init__(self):
        super().__init__()
        self.register_buffer("loc", torch.zeros(2))
        self.register_buffer("cov", torch.eye(2))
        self.register_buffer("mask", torch.tensor([[0, 1], [1, 0]] * 3, dtype=torch.float32))
        self.s = nn.ModuleList(nn.Sequential(nn.Linear(2, 64), nn.SiLU(), nn.Linear(64, 64), nn.SiLU(),
                                             nn.Linear(64, 2), nn.Tanh()) for _ in range(6))
        self.t = nn.ModuleList(nn.Sequential(nn.Linear(2, 64), nn.SiLU(), nn.Linear(64, 64), nn.SiLU(),
                                             nn.Linear(64, 2)) for _ in range(6))


class Pose26(Pose):
    """YOLO26's pose head: cv4 is two Convs (c4 = max(ch[0] / 4, K (D + 2))) feeding `cv4_kpts` (1x1 to K*D) and,
    in training, `cv4_sigma` (1x1 to 2K) and the flow model; keypoints x = (raw + anchor) * stride."""

    gain, cell = 1.0, 0.0

    def make_keypoint_branches(self, ch, end2end, one2many, training):
        k, d = self.kpt_shape
        c4 = max(ch[0] // 4, k * (d + 2))
        self.add_branches("cv4", end2end, one2many,
                          lambda: nn.ModuleList(nn.Sequential(Conv(x, c4, 3), Conv(c4, c4, 3)) for x in ch))
        self.add_branches("cv4_kpts", end2end, one2many, lambda: nn.ModuleList(nn.Conv2d(c4, self.nk, 1) for _ in ch))
        if training:
            self.add_branches("cv4_sigma", end2end, one2many,
                              lambda: nn.ModuleList(nn.Conv2d(c4, 2 * k, 1) for _ in ch))
            self.flow_model = RealNVP()

    def raw_keypoints(self, xs):
        return _flat([kpts(features(x)) for features, kpts, x in zip(self.branch("cv4"), self.branch("cv4_kpts"), xs)])


def rotated_boxes(distances, angle, anchors):
    """(B, 4, A) (l, t, r, b), (B, 1, A) angle -> rotated centre xy and wh in grid units."""
    lt, rb = distances.chunk(2, 1)
    xf, yf = ((rb - lt) / 2).chunk(2, 1)
    cos, sin = angle.cos(), angle.sin()
    xy = torch.cat((xf * cos - yf * sin, xf * sin + yf * cos), 1) + anchors
    return torch.cat((xy, lt + rb), 1)


class OBB(Detect):
    """forward: (B, 4 + nc + 1, A) (or the end-to-end rows): rotated xywh (both branches), scores, angle (radians):
    (sigmoid - 0.25) * pi; OBB26's is the raw branch output."""

    raw_angle = False

    def __init__(self, nc: int, ne: int, ch: Sequence[int], legacy: bool = False, reg_max: int = 16,
                 end2end: bool = False, one2many: bool = True, training: bool = True):
        super().__init__(nc, ch, legacy, reg_max, end2end, one2many, training)
        self.ne = ne
        self.add_branches("cv4", end2end, one2many, lambda: _extra_branch(ch, max(ch[0] // 4, ne), ne))
        self._angle = None

    def decode_boxes(self, box, anchors, strides):
        return rotated_boxes(self.dfl(box), self._angle, anchors) * strides

    def forward(self, xs):
        angle = _flat([branch(x) for branch, x in zip(self.branch("cv4"), xs)])
        self._angle = angle if self.raw_angle else (angle.sigmoid() - 0.25) * math.pi
        try:
            return self.finish(torch.cat((self.decode(self.branches(xs)), self._angle), 1))
        finally:
            self._angle = None


class OBB26(OBB):
    raw_angle = True


# ----------------------------------------------------------------------------------------------- the network


def head_channels(first: int, nc: int, reg_max: int) -> tuple[int, int]:
    return max(16, first // 4, reg_max * 4), max(first, min(nc, 100))


def box_branch(net, weights, prefix: str, x, hidden: int, outputs: int):
    """Conv 3x3, Conv 3x3, Conv2d 1x1 with bias (`<prefix>.0`, `.1`, `.2`): cv2, and the task forms' cv4."""
    y = conv(net, weights, f"{prefix}.0", x, x.shape[1], hidden, 3)
    y = conv(net, weights, f"{prefix}.1", y, hidden, hidden, 3)
    return layers.conv2d(net, weights, f"{prefix}.2", y, outputs, 1)


def class_branch(net, weights, prefix: str, x, hidden: int, outputs: int, legacy: bool):
    if legacy:
        return box_branch(net, weights, prefix, x, hidden, outputs)
    c = x.shape[1]
    y = dwconv(net, weights, f"{prefix}.0.0", x, c, c, 3)
    y = conv(net, weights, f"{prefix}.0.1", y, c, hidden, 1)
    y = dwconv(net, weights, f"{prefix}.1.0", y, hidden, hidden, 3)
    y = conv(net, weights, f"{prefix}.1.1", y, hidden, hidden, 1)
    return layers.conv2d(net, weights, f"{prefix}.2", y, outputs, 1)


TRAINING_ONLY = ("proto.semseg.", "flow_model.", "cv4_sigma.", "one2one_cv4_sigma.")


def start_head(weights, prefix: str, end2end: bool, one2many: bool) -> str:
    """The branch prefix the head reads ("one2one_" or ""); the other branch set and training's parts are set aside
    (read by no layer, on purpose)."""
    one2one = uses_one2one(end2end, one2many)
    if one2one:
        for name in ("cv2.", "cv3.", "cv4.", "cv4_kpts.", "cv4_sigma."):
            weights.set_aside(f"{prefix}.{name}")
    else:
        weights.set_aside(f"{prefix}.one2one_")
    for name in TRAINING_ONLY:
        weights.set_aside(f"{prefix}.{name}")
    return "one2one_" if one2one else ""


def head_branches(net, weights, prefix: str, xs, nc: int, legacy: bool, reg_max: int, branch: str = "") -> list:
    c2, c3 = head_channels(xs[0].shape[1], nc, reg_max)
    return [(box_branch(net, weights, f"{prefix}.{branch}cv2.{i}", x, c2, 4 * reg_max),
             class_branch(net, weights, f"{prefix}.{branch}cv3.{i}", x, c3, nc, legacy)) for i, x in enumerate(xs)]


def _fp32(net, x):
    return x if x.dtype == trt.float32 else layers.cast(net, x, trt.float32, f"{x.name}/fp32")


def _constant(net, array, name: str):
    return layers.constant(net, np.ascontiguousarray(array, np.float32), name)


def dfl_bins(weights, prefix: str, reg_max: int) -> np.ndarray:
    if reg_max == 1:
        return np.zeros(1, np.float32)
    return weights.take(f"{prefix}.dfl.conv.weight", (1, reg_max, 1, 1)).reshape(reg_max)


def anchor_grid(sizes, strides) -> tuple[np.ndarray, np.ndarray]:
    """((2, A) cell centres in grid units, (A,) stride of each anchor), levels in order, rows then columns."""
    points, per_anchor = [], []
    for (h, w), s in zip(sizes, strides):
        gy, gx = np.meshgrid(np.arange(h, dtype=np.float32) + 0.5, np.arange(w, dtype=np.float32) + 0.5,
                             indexing="ij")
        points.append(np.stack((gx.reshape(-1), gy.reshape(-1))))
        per_anchor.append(np.full(h * w, s, np.float32))
    return np.concatenate(points, 1), np.concatenate(per_anchor)


def dfl_distances(net, weights, prefix: str, raw: list, reg_max: int):
    """(distances (B, 4, A) FP32 in grid units (`<prefix>.dfl`), class logits per level (B, nc, HW), level sizes)."""
    boxes = [layers.reshape(net, _fp32(net, box), (0, 4 * reg_max, box.shape[2] * box.shape[3]), f"{prefix}/box{i}")
             for i, (box, _) in enumerate(raw)]
    classes = [layers.reshape(net, _fp32(net, cls), (0, cls.shape[1], cls.shape[2] * cls.shape[3]),
                              f"{prefix}/cls{i}") for i, (_, cls) in enumerate(raw)]
    sizes = [tuple(box.shape[2:]) for box, _ in raw]
    num_anchors = sum(h * w for h, w in sizes)
    box = layers.concat(net, boxes, f"{prefix}/box", axis=2)
    if reg_max == 1:
        return box, classes, sizes
    bins = dfl_bins(weights, prefix, reg_max)
    logits = layers.reshape(net, box, (0, 4, reg_max, num_anchors), f"{prefix}/bins")
    p = layers.softmax(net, logits, f"{prefix}/bins_softmax", axis=2)
    weighted = layers.multiply(net, p, _constant(net, bins.reshape(1, 1, reg_max, 1), f"{prefix}/dfl_bins"),
                               f"{prefix}/bins_weighted")
    return layers.named(net.add_reduce(weighted, trt.ReduceOperation.SUM, 1 << 2, False), f"{prefix}.dfl"), \
        classes, sizes


def _gather(net, x, indices, name: str):
    return layers.named(net.add_gather(x, layers.constant(net, np.asarray(indices, np.int32), f"{name}/indices"), 1),
                        name)


def decode_with_layers(net, weights, prefix: str, raw: list, strides, reg_max: int):
    """(B, 4 + nc, A) with plain layers: swapped = (r, b, l, t) by a constant gather, cxcywh = swapped * (.5, .5, 1,
    1) + d * (-.5, -.5, 1, 1) + (anchor x, anchor y, 0, 0), times each anchor's stride (no batch slicing)."""
    distances, classes, sizes = dfl_distances(net, weights, prefix, raw, reg_max)
    swapped = _gather(net, distances, [2, 3, 0, 1], f"{prefix}/swapped")
    anchors, per_anchor = anchor_grid(sizes, strides)
    offset = np.zeros((1, 4, anchors.shape[1]), np.float32)
    offset[0, :2] = anchors
    p = layers.multiply(net, swapped, _constant(net, np.reshape([0.5, 0.5, 1, 1], (1, 4, 1)), f"{prefix}/P"),
                        f"{prefix}/swapped_scaled")
    q = layers.multiply(net, distances, _constant(net, np.reshape([-0.5, -0.5, 1, 1], (1, 4, 1)), f"{prefix}/Q"),
                        f"{prefix}/distances_scaled")
    xywh = layers.add(net, layers.add(net, p, q, f"{prefix}/sum"), _constant(net, offset, f"{prefix}/anchors"),
                      f"{prefix}/xywh_grid")
    xywh = layers.multiply(net, xywh, _constant(net, per_anchor.reshape(1, 1, -1), f"{prefix}/strides"),
                           f"{prefix}/xywh")
    scores = layers.activation(net, layers.concat(net, classes, f"{prefix}/cls", axis=2), "sigmoid",
                               f"{prefix}/scores")
    return layers.concat(net, [xywh, scores], prefix, axis=1)


def decode_with_plugin(net, weights, prefix: str, raw: list, strides, reg_max: int):
    """(B, 4 + nc, A): one `zoo::dfl_decode` op per level (FP32 or FP16 in, FP32 out), concatenated."""
    bins = dfl_bins(weights, prefix, reg_max)
    if not np.array_equal(bins, np.arange(reg_max, dtype=np.float32)):
        raise ValueError(f"{weights.source}: {prefix}.dfl.conv.weight is not 0..{reg_max - 1}; the plugin assumes "
                         "those bins: build with --decode layers")
    levels = [add_dfl_decode(net, box, cls, stride=s, reg_max=reg_max, name=f"{prefix}/decode{i}")
              for i, ((box, cls), s) in enumerate(zip(raw, strides))]
    return layers.concat(net, levels, prefix, axis=2)


def decode_xyxy(net, weights, prefix: str, raw: list, strides, reg_max: int):
    """(B, 4 + nc, A) of the one-to-one branch: xyxy = ((-l, -t, r, b) + (ax, ay, ax, ay)) * stride, sigmoid scores;
    plain layers in FP32 (the end-to-end boxes are corners, not the plugin's centre and size)."""
    distances, classes, sizes = dfl_distances(net, weights, prefix, raw, reg_max)
    anchors, per_anchor = anchor_grid(sizes, strides)
    signed = layers.multiply(net, distances, _constant(net, np.reshape([-1, -1, 1, 1], (1, 4, 1)), f"{prefix}/signs"),
                             f"{prefix}/signed")
    corners = layers.add(net, signed, _constant(net, np.concatenate([anchors, anchors])[None], f"{prefix}/anchors"),
                         f"{prefix}/xyxy_grid")
    xyxy = layers.multiply(net, corners, _constant(net, per_anchor.reshape(1, 1, -1), f"{prefix}/strides"),
                           f"{prefix}/xyxy")
    scores = layers.activation(net, layers.concat(net, classes, f"{prefix}/cls", axis=2), "sigmoid",
                               f"{prefix}/scores")
    return layers.concat(net, [xyxy, scores], f"{prefix}/decoded", axis=1)


def finish(net, predictions, nc: int, branch: str, prefix: str):
    """The head's output `prefix`: the end-to-end rows (one-to-one branch) or the dense predictions."""
    if not branch:
        return layers.rename(predictions, prefix)
    return select_rows_network(net, layers.rename(predictions, f"{prefix}/predictions"), nc, options().max_det,
                               prefix)


def _boxes(net, weights, prefix, raw, reg_max, branch: str = ""):
    if branch:
        return decode_xyxy(net, weights, prefix, raw, options().strides, reg_max)
    decode = options().decode
    if decode not in DECODES:
        raise ValueError(f"decode must be one of {DECODES}, got {decode!r}")
    # reg_max 1 (YOLO26) has no DFL: the plugin's softmax over one bin would be a constant; plain layers then
    with_plugin = decode == "plugin" and reg_max > 1
    return (decode_with_plugin if with_plugin else decode_with_layers)(net, weights, prefix, raw, options().strides,
                                                                       reg_max)


def _levels(net, per_level: list, name: str):
    """Per-level (B, C, H, W) -> (B, C, A) FP32, levels concatenated."""
    flat = [layers.reshape(net, _fp32(net, t), (0, t.shape[1], t.shape[2] * t.shape[3]), f"{name}/flat{i}")
            for i, t in enumerate(per_level)]
    return layers.concat(net, flat, name, axis=2)


def _extra(net, weights, prefix, xs, outputs: int, branch: str = ""):
    hidden = max(xs[0].shape[1] // 4, outputs)
    return _levels(net, [box_branch(net, weights, f"{prefix}.{branch}cv4.{i}", x, hidden, outputs)
                         for i, x in enumerate(xs)], f"{prefix}/{branch}cv4")


def detect(net, weights, prefix: str, xs, nc: int, ch, legacy: bool = False, reg_max: int = 16,
           end2end: bool = False, one2many: bool = True, training: bool = True):
    branch = start_head(weights, prefix, end2end, one2many)
    raw = head_branches(net, weights, prefix, xs, nc, legacy, reg_max, branch)
    return finish(net, _boxes(net, weights, prefix, raw, reg_max, branch), nc, branch, prefix)


def proto(net, weights, prefix: str, p3, c_: int, c2: int):
    y = conv(net, weights, f"{prefix}.cv1", p3, p3.shape[1], c_, 3)
    y = layers.conv_transpose2d(net, weights, f"{prefix}.upsample", y, c_, 2, 2)
    y = conv(net, weights, f"{prefix}.cv2", y, c_, c_, 3)
    return layers.rename(conv(net, weights, f"{prefix}.cv3", y, c_, c2, 1), prefix)


def proto26(net, weights, prefix: str, xs, c_: int, c2: int):
    """Proto26: levels refined to P3's channels, upsampled (nearest) and summed, feat_fuse 3x3, then Proto."""
    feat = xs[0]
    for i, x in enumerate(xs[1:]):
        refined = conv(net, weights, f"{prefix}.feat_refine.{i}", x, x.shape[1], xs[0].shape[1], 1)
        up = layers.upsample_nearest(net, refined, f"{prefix}/refine{i}_up", 2 ** (i + 1))
        feat = layers.add(net, feat, up, f"{prefix}/sum{i}")
    fused = conv(net, weights, f"{prefix}.feat_fuse", feat, xs[0].shape[1], c_, 3)
    return proto(net, weights, prefix, fused, c_, c2)


def segment(net, weights, prefix: str, xs, nc: int, nm: int, npr: int, ch, legacy: bool = False,
            reg_max: int = 16, end2end: bool = False, one2many: bool = True, training: bool = True,
            protos=None):
    """Outputs `prefix` (B, 4 + nc + nm, A) or the end-to-end rows (B, k, 6 + nm), and `prefix.proto` (B, nm, H/4,
    W/4)."""
    branch = start_head(weights, prefix, end2end, one2many)
    raw = head_branches(net, weights, prefix, xs, nc, legacy, reg_max, branch)
    extra = _extra(net, weights, prefix, xs, nm, branch)
    boxes = layers.rename(_boxes(net, weights, prefix, raw, reg_max, branch), f"{prefix}/boxes")
    rows = finish(net, layers.concat(net, [boxes, extra], f"{prefix}/with_masks", axis=1), nc, branch, prefix)
    made = (protos or (lambda: proto(net, weights, f"{prefix}.proto", xs[0], npr, nm)))()
    return [rows, made]


def segment26(net, weights, prefix: str, xs, nc: int, nm: int, npr: int, ch, legacy: bool = False,
              reg_max: int = 16, end2end: bool = False, one2many: bool = True, training: bool = True):
    return segment(net, weights, prefix, xs, nc, nm, npr, ch, legacy, reg_max, end2end, one2many, training,
                   protos=lambda: proto26(net, weights, f"{prefix}.proto", xs, npr, nm))


def decode_keypoints(net, raw, kpt_shape, sizes, strides, name: str, factor: float = 2.0, cell: float = -0.5):
    """raw * gain + cells (+ sigmoid on visibility channels): constants per channel and anchor; x = (raw * factor +
    anchor + cell) * stride (YOLO26: factor 1, cell 0)."""
    k, d = kpt_shape
    anchors, per_anchor = anchor_grid(sizes, strides)
    cells = (anchors + cell) * per_anchor
    gain = np.zeros((1, k * d, anchors.shape[1]), np.float32)
    offset = np.zeros_like(gain)
    for axis in (0, 1):
        gain[0, axis::d] = factor * per_anchor
        offset[0, axis::d] = cells[axis]
    out = layers.add(net, layers.multiply(net, raw, _constant(net, gain, f"{name}/gain"), f"{name}/linear"),
                     _constant(net, offset, f"{name}/cells"), f"{name}/xy")
    if d == 3:
        visible = np.zeros((1, k * d, 1), np.float32)
        visible[0, 2::3] = 1.0
        sig = layers.activation(net, raw, "sigmoid", f"{name}/sigmoid")
        out = layers.add(net, out, layers.multiply(net, sig, _constant(net, visible, f"{name}/visibility_mask"),
                                                   f"{name}/visibility"), f"{name}/with_visibility")
    return layers.rename(out, name)


def pose(net, weights, prefix: str, xs, nc: int, kpt_shape, ch, legacy: bool = False, reg_max: int = 16,
         end2end: bool = False, one2many: bool = True, training: bool = True, yolo26: bool = False):
    branch = start_head(weights, prefix, end2end, one2many)
    raw = head_branches(net, weights, prefix, xs, nc, legacy, reg_max, branch)
    nk = kpt_shape[0] * kpt_shape[1]
    if yolo26:   # cv4: two Convs, then cv4_kpts 1x1
        c4 = max(xs[0].shape[1] // 4, kpt_shape[0] * (kpt_shape[1] + 2))
        levels = []
        for i, x in enumerate(xs):
            y = conv(net, weights, f"{prefix}.{branch}cv4.{i}.0", x, x.shape[1], c4, 3)
            y = conv(net, weights, f"{prefix}.{branch}cv4.{i}.1", y, c4, c4, 3)
            levels.append(layers.conv2d(net, weights, f"{prefix}.{branch}cv4_kpts.{i}", y, nk, 1))
        extra = _levels(net, levels, f"{prefix}/{branch}cv4_kpts")
    else:
        extra = _extra(net, weights, prefix, xs, nk, branch)
    boxes = layers.rename(_boxes(net, weights, prefix, raw, reg_max, branch), f"{prefix}/boxes")
    keypoints = decode_keypoints(net, extra, kpt_shape, [tuple(x.shape[2:]) for x in xs], options().strides,
                                 f"{prefix}/keypoints", *((1.0, 0.0) if yolo26 else (2.0, -0.5)))
    return finish(net, layers.concat(net, [boxes, keypoints], f"{prefix}/with_keypoints", axis=1), nc, branch,
                  prefix)


def pose26(net, weights, prefix: str, xs, nc: int, kpt_shape, ch, legacy: bool = False, reg_max: int = 16,
           end2end: bool = False, one2many: bool = True, training: bool = True):
    return pose(net, weights, prefix, xs, nc, kpt_shape, ch, legacy, reg_max, end2end, one2many, training, True)


def obb(net, weights, prefix: str, xs, nc: int, ne: int, ch, legacy: bool = False, reg_max: int = 16,
        end2end: bool = False, one2many: bool = True, training: bool = True, raw_angle: bool = False):
    """(B, 4 + nc + 1, A) or the end-to-end rows, always plain layers (the dfl_decode plugin's boxes are
    axis-aligned); both branches give rotated xywh."""
    branch = start_head(weights, prefix, end2end, one2many)
    raw = head_branches(net, weights, prefix, xs, nc, legacy, reg_max, branch)
    angle_logits = _extra(net, weights, prefix, xs, ne, branch)
    distances, classes, sizes = dfl_distances(net, weights, prefix, raw, reg_max)
    if raw_angle:  # OBB26
        angle = layers.rename(angle_logits, f"{prefix}/angle")
    else:
        angle = layers.activation(net, angle_logits, "sigmoid", f"{prefix}/angle_sigmoid")
        angle = layers.add(net, angle, _constant(net, np.full((1, 1, 1), -0.25), f"{prefix}/quarter"),
                           f"{prefix}/angle_centred")
        angle = layers.multiply(net, angle, _constant(net, np.full((1, 1, 1), math.pi), f"{prefix}/pi"),
                                f"{prefix}/angle")
    cos = layers.named(net.add_unary(angle, trt.UnaryOperation.COS), f"{prefix}/cos")
    sin = layers.named(net.add_unary(angle, trt.UnaryOperation.SIN), f"{prefix}/sin")
    swapped = _gather(net, distances, [2, 3, 0, 1], f"{prefix}/swapped")           # (r, b, l, t)
    half = layers.multiply(net, layers.named(net.add_elementwise(swapped, distances, trt.ElementWiseOperation.SUB),
                                             f"{prefix}/offset2"),
                           _constant(net, np.full((1, 1, 1), 0.5), f"{prefix}/half"), f"{prefix}/offset")
    xf, yf = _gather(net, half, [0], f"{prefix}/xf"), _gather(net, half, [1], f"{prefix}/yf")
    x = layers.named(net.add_elementwise(layers.multiply(net, xf, cos, f"{prefix}/xf_cos"),
                                         layers.multiply(net, yf, sin, f"{prefix}/yf_sin"),
                                         trt.ElementWiseOperation.SUB), f"{prefix}/x")
    y = layers.add(net, layers.multiply(net, xf, sin, f"{prefix}/xf_sin"),
                   layers.multiply(net, yf, cos, f"{prefix}/yf_cos"), f"{prefix}/y")
    anchors, per_anchor = anchor_grid(sizes, options().strides)
    xy = layers.add(net, layers.concat(net, [x, y], f"{prefix}/xy_offset", axis=1),
                    _constant(net, anchors[None], f"{prefix}/anchors"), f"{prefix}/xy_grid")
    wh = _gather(net, layers.add(net, swapped, distances, f"{prefix}/sides"), [0, 1], f"{prefix}/wh_grid")
    boxes = layers.multiply(net, layers.concat(net, [xy, wh], f"{prefix}/xywh_grid", axis=1),
                            _constant(net, per_anchor.reshape(1, 1, -1), f"{prefix}/strides"), f"{prefix}/xywh")
    scores = layers.activation(net, layers.concat(net, classes, f"{prefix}/cls", axis=2), "sigmoid",
                               f"{prefix}/scores")
    return finish(net, layers.concat(net, [boxes, scores, angle], f"{prefix}/rotated", axis=1), nc, branch, prefix)


def obb26(net, weights, prefix: str, xs, nc: int, ne: int, ch, legacy: bool = False, reg_max: int = 16,
          end2end: bool = False, one2many: bool = True, training: bool = True):
    return obb(net, weights, prefix, xs, nc, ne, ch, legacy, reg_max, end2end, one2many, training, True)


# ---------------------------------------------------------------------------------------------- table rows


HEAD_FORMS = {"Segment26": "Segment", "Pose26": "Pose", "OBB26": "OBB", "v10Detect": "Detect"}


def head_resolve(row):
    """[nc, <the head's own args>, ch, legacy, reg_max, end2end, one2many, training_parts]; Segment's proto width is
    scaled like a channel count. `end2end` is the table's (YOLOv10's v10Detect always has it); `one2many` and
    `training_parts` are the project's table keys for weights without those parts (fused; default: present)."""
    if not row.args or not isinstance(row.args[0], int) or row.args[0] < 1:
        raise TableError(f"{row.where()}: the first argument must be the class count, got {row.args!r}")
    args = list(row.args)
    form = HEAD_FORMS.get(row.name, row.name)
    if form == "Segment":
        args = (args + [32, 256])[:3]
        args[2] = row.channels(args[2])
    elif form == "Pose":
        args = (args + [[17, 3]])[:2]
        if not (isinstance(args[1], (list, tuple)) and len(args[1]) == 2 and args[1][1] in (2, 3)):
            raise TableError(f"{row.where()}: kpt_shape must be [K, 2 or 3], got {args[1]!r}")
    elif form == "OBB":
        args = (args + [1])[:2]
    else:
        args = args[:1]
    v10 = row.name == "v10Detect"
    legacy = not v10 and not any(name in MODERN for name in row.previous)
    reg_max = 16 if v10 else int(row.table.get("reg_max", 16))
    end2end = v10 or bool(row.table.get("end2end", False))
    return [*args, list(row.inputs), legacy, reg_max, end2end, bool(row.table.get("one2many", True)),
            bool(row.table.get("training_parts", True))], row.inputs[0]


register(Block("Detect", Detect, detect, resolve=head_resolve, head=True),
         Block("Segment", Segment, segment, resolve=head_resolve, head=True),
         Block("Pose", Pose, pose, resolve=head_resolve, head=True),
         Block("OBB", OBB, obb, resolve=head_resolve, head=True),
         Block("v10Detect", Detect, detect, resolve=head_resolve, head=True),
         Block("Segment26", Segment26, segment26, resolve=head_resolve, head=True),
         Block("Pose26", Pose26, pose26, resolve=head_resolve, head=True),
         Block("OBB26", OBB26, obb26, resolve=head_resolve, head=True))
