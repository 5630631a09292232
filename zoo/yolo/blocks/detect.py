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


class Detect(nn.Module):
    """Eval output (B, 4 + nc, A): xywh in input pixels, then the sigmoid class scores; no objectness. The strides
    are the table's (`Options.strides`, set by the walker)."""

    def __init__(self, nc: int, ch: Sequence[int], legacy: bool = False, reg_max: int = 16):
        super().__init__()
        self.nc, self.nl, self.reg_max, self.legacy = nc, len(ch), reg_max, legacy
        self.strides = tuple(options().strides) or (8, 16, 32)[:len(ch)]
        c2, c3 = head_channels(ch[0], nc, reg_max)
        self.cv2 = nn.ModuleList(nn.Sequential(Conv(x, c2, 3), Conv(c2, c2, 3), nn.Conv2d(c2, 4 * reg_max, 1))
                                 for x in ch)
        if legacy:
            self.cv3 = nn.ModuleList(nn.Sequential(Conv(x, c3, 3), Conv(c3, c3, 3), nn.Conv2d(c3, nc, 1))
                                     for x in ch)
        else:
            self.cv3 = nn.ModuleList(nn.Sequential(nn.Sequential(DWConv(x, x, 3), Conv(x, c3, 1)),
                                                   nn.Sequential(DWConv(c3, c3, 3), Conv(c3, c3, 1)),
                                                   nn.Conv2d(c3, nc, 1)) for x in ch)
        self.dfl = DFL(reg_max) if reg_max > 1 else nn.Identity()

    def branches(self, xs):
        return [(self.cv2[i](x), self.cv3[i](x)) for i, x in enumerate(xs)]

    def decode_boxes(self, box, anchors, strides):
        return dist_to_xywh(self.dfl(box), anchors) * strides

    def decode(self, raw):
        b = raw[0][0].shape[0]
        anchors, strides = anchor_points([tuple(box.shape[2:]) for box, _ in raw], self.strides,
                                         raw[0][0].dtype, raw[0][0].device)
        box = torch.cat([r.reshape(b, 4 * self.reg_max, -1) for r, _ in raw], 2)
        cls = torch.cat([c.reshape(b, self.nc, -1) for _, c in raw], 2)
        return torch.cat((self.decode_boxes(box, anchors, strides), cls.sigmoid()), 1)

    def forward(self, xs):
        return self.decode(self.branches(xs))


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


class Segment(Detect):
    """forward: ((B, 4 + nc + nm, A), protos (B, nm, H/4, W/4))."""

    def __init__(self, nc: int, nm: int, npr: int, ch: Sequence[int], legacy: bool = False, reg_max: int = 16):
        super().__init__(nc, ch, legacy, reg_max)
        self.nm, self.npr = nm, npr
        self.proto = Proto(ch[0], npr, nm)
        self.cv4 = _extra_branch(ch, max(ch[0] // 4, nm), nm)

    def forward(self, xs):
        coefficients = _flat([branch(x) for branch, x in zip(self.cv4, xs)])
        return torch.cat((self.decode(self.branches(xs)), coefficients), 1), self.proto(xs[0])


class Pose(Detect):
    """forward: (B, 4 + nc + K*D, A); channel k*D + d is dimension d of keypoint k, in input pixels."""

    def __init__(self, nc: int, kpt_shape, ch: Sequence[int], legacy: bool = False, reg_max: int = 16):
        super().__init__(nc, ch, legacy, reg_max)
        self.kpt_shape = tuple(kpt_shape)
        self.nk = self.kpt_shape[0] * self.kpt_shape[1]
        self.cv4 = _extra_branch(ch, max(ch[0] // 4, self.nk), self.nk)

    def decode_keypoints(self, raw, sizes):
        anchors, strides = anchor_points(sizes, self.strides, raw.dtype, raw.device)
        d = self.kpt_shape[1]
        y = raw.clone()
        if d == 3:
            y[:, 2::3] = raw[:, 2::3].sigmoid()
        y[:, 0::d] = (raw[:, 0::d] * 2.0 + (anchors[0] - 0.5)) * strides
        y[:, 1::d] = (raw[:, 1::d] * 2.0 + (anchors[1] - 0.5)) * strides
        return y

    def forward(self, xs):
        keypoints = self.decode_keypoints(_flat([branch(x) for branch, x in zip(self.cv4, xs)]),
                                          [tuple(x.shape[2:]) for x in xs])
        return torch.cat((self.decode(self.branches(xs)), keypoints), 1)


def rotated_boxes(distances, angle, anchors):
    """(B, 4, A) (l, t, r, b), (B, 1, A) angle -> rotated centre xy and wh in grid units."""
    lt, rb = distances.chunk(2, 1)
    xf, yf = ((rb - lt) / 2).chunk(2, 1)
    cos, sin = angle.cos(), angle.sin()
    xy = torch.cat((xf * cos - yf * sin, xf * sin + yf * cos), 1) + anchors
    return torch.cat((xy, lt + rb), 1)


class OBB(Detect):
    """forward: (B, 4 + nc + 1, A): rotated xywh, scores, angle (radians)."""

    def __init__(self, nc: int, ne: int, ch: Sequence[int], legacy: bool = False, reg_max: int = 16):
        super().__init__(nc, ch, legacy, reg_max)
        self.ne = ne
        self.cv4 = _extra_branch(ch, max(ch[0] // 4, ne), ne)
        self._angle = None

    def decode_boxes(self, box, anchors, strides):
        return rotated_boxes(self.dfl(box), self._angle, anchors) * strides

    def forward(self, xs):
        self._angle = (_flat([branch(x) for branch, x in zip(self.cv4, xs)]).sigmoid() - 0.25) * math.pi
        try:
            return torch.cat((self.decode(self.branches(xs)), self._angle), 1)
        finally:
            self._angle = None


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


def head_branches(net, weights, prefix: str, xs, nc: int, legacy: bool, reg_max: int) -> list[tuple]:
    c2, c3 = head_channels(xs[0].shape[1], nc, reg_max)
    return [(box_branch(net, weights, f"{prefix}.cv2.{i}", x, c2, 4 * reg_max),
             class_branch(net, weights, f"{prefix}.cv3.{i}", x, c3, nc, legacy)) for i, x in enumerate(xs)]


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


def _boxes(net, weights, prefix, raw, reg_max):
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


def _extra(net, weights, prefix, xs, outputs: int):
    hidden = max(xs[0].shape[1] // 4, outputs)
    return _levels(net, [box_branch(net, weights, f"{prefix}.cv4.{i}", x, hidden, outputs) for i, x in enumerate(xs)],
                   f"{prefix}/cv4")


def detect(net, weights, prefix: str, xs, nc: int, ch, legacy: bool = False, reg_max: int = 16):
    return _boxes(net, weights, prefix, head_branches(net, weights, prefix, xs, nc, legacy, reg_max), reg_max)


def proto(net, weights, prefix: str, p3, c_: int, c2: int):
    y = conv(net, weights, f"{prefix}.cv1", p3, p3.shape[1], c_, 3)
    y = layers.conv_transpose2d(net, weights, f"{prefix}.upsample", y, c_, 2, 2)
    y = conv(net, weights, f"{prefix}.cv2", y, c_, c_, 3)
    return layers.rename(conv(net, weights, f"{prefix}.cv3", y, c_, c2, 1), prefix)


def segment(net, weights, prefix: str, xs, nc: int, nm: int, npr: int, ch, legacy: bool = False,
            reg_max: int = 16):
    """Outputs `prefix` (B, 4 + nc + nm, A) and `prefix.proto` (B, nm, H/4, W/4)."""
    raw = head_branches(net, weights, prefix, xs, nc, legacy, reg_max)
    extra = _extra(net, weights, prefix, xs, nm)
    boxes = layers.rename(_boxes(net, weights, prefix, raw, reg_max), f"{prefix}/boxes")
    return [layers.concat(net, [boxes, extra], prefix, axis=1), proto(net, weights, f"{prefix}.proto", xs[0], npr, nm)]


def decode_keypoints(net, raw, kpt_shape, sizes, strides, name: str):
    """raw * gain + cells (+ sigmoid on visibility channels): constants per channel and anchor."""
    k, d = kpt_shape
    anchors, per_anchor = anchor_grid(sizes, strides)
    cells = (anchors - 0.5) * per_anchor
    gain = np.zeros((1, k * d, anchors.shape[1]), np.float32)
    offset = np.zeros_like(gain)
    for axis in (0, 1):
        gain[0, axis::d] = 2 * per_anchor
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


def pose(net, weights, prefix: str, xs, nc: int, kpt_shape, ch, legacy: bool = False, reg_max: int = 16):
    raw = head_branches(net, weights, prefix, xs, nc, legacy, reg_max)
    extra = _extra(net, weights, prefix, xs, kpt_shape[0] * kpt_shape[1])
    boxes = layers.rename(_boxes(net, weights, prefix, raw, reg_max), f"{prefix}/boxes")
    keypoints = decode_keypoints(net, extra, kpt_shape, [tuple(x.shape[2:]) for x in xs], options().strides,
                                 f"{prefix}/keypoints")
    return layers.concat(net, [boxes, keypoints], prefix, axis=1)


def obb(net, weights, prefix: str, xs, nc: int, ne: int, ch, legacy: bool = False, reg_max: int = 16):
    """(B, 4 + nc + 1, A), always plain layers (the dfl_decode plugin's boxes are axis-aligned)."""
    raw = head_branches(net, weights, prefix, xs, nc, legacy, reg_max)
    angle_logits = _extra(net, weights, prefix, xs, ne)
    distances, classes, sizes = dfl_distances(net, weights, prefix, raw, reg_max)
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
    return layers.concat(net, [boxes, scores, angle], prefix, axis=1)


# ---------------------------------------------------------------------------------------------- table rows


def head_resolve(row):
    """[nc, <the head's own args>, ch, legacy, reg_max]; Segment's proto width is scaled like a channel count."""
    if not row.args or not isinstance(row.args[0], int) or row.args[0] < 1:
        raise TableError(f"{row.where()}: the first argument must be the class count, got {row.args!r}")
    args = list(row.args)
    if row.name == "Segment":
        args = (args + [32, 256])[:3]
        args[2] = row.channels(args[2])
    elif row.name == "Pose":
        args = (args + [[17, 3]])[:2]
        if not (isinstance(args[1], (list, tuple)) and len(args[1]) == 2 and args[1][1] in (2, 3)):
            raise TableError(f"{row.where()}: kpt_shape must be [K, 2 or 3], got {args[1]!r}")
    elif row.name == "OBB":
        args = (args + [1])[:2]
    else:
        args = args[:1]
    legacy = not any(name in MODERN for name in row.previous)
    return [*args, list(row.inputs), legacy, int(row.table.get("reg_max", 16))], row.inputs[0]


register(Block("Detect", Detect, detect, resolve=head_resolve, head=True),
         Block("Segment", Segment, segment, resolve=head_resolve, head=True),
         Block("Pose", Pose, pose, resolve=head_resolve, head=True),
         Block("OBB", OBB, obb, resolve=head_resolve, head=True))
