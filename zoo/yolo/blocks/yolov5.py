"""The anchored heads of YOLOv5 v7.0 (its repository's `models/yolo.py`), for tables in YOLOv5's dialect (a
top-level `anchors` key): `yolov5.Detect` and `yolov5.Segment` (with YOLOv5's Proto: nearest upsampling).

Detect(nc, anchors, ch): one 1x1 conv with bias per level, na * (5 + nc) channels, channel a * no + j = field j of
anchor a; the saved buffer `anchors` is in grid units (pixels / stride). Decode: xy = (2 sig - 0.5 + cell) * stride,
wh = (2 sig)^2 * anchor pixels, objectness and classes sigmoid: (B, sum na*h*w, 5 + nc), levels then anchors then
rows. On the network: the `zoo::yolo_decode` plugin or plain layers (y*y*A + y*B + G per column). Segment adds nm raw
mask coefficients per anchor and `proto` on the first level.
"""
from __future__ import annotations

from typing import Sequence

import numpy as np
import torch
from torch import nn

import layers
from plugins.yolo_decode import add_decode
from zoo.trt_api import trt
from zoo.yolo.registry import Block, TableError, make_divisible, options, register

from .conv import Conv, conv


def _anchors_px(anchors, levels: int) -> list:
    """The table's anchors as [[(w, h), ...] per level] in pixels (upstream writes flat [w, h, w, h, ...] lists)."""
    if isinstance(anchors, int):
        raise TableError(f"anchors given as a count ({anchors}); write the anchor sizes")
    out = [[(float(a[k]), float(a[k + 1])) for k in range(0, len(a), 2)] if not isinstance(a[0], (list, tuple))
           else [tuple(map(float, p)) for p in a] for a in anchors]
    if len(out) != levels:
        raise TableError(f"{len(out)} anchor levels for {levels} head inputs")
    return out


class Detect(nn.Module):
    def __init__(self, nc: int, anchors, ch: Sequence[int]):
        super().__init__()
        anchors_px = _anchors_px(anchors, len(ch))
        self.nc, self.no, self.nl, self.na = nc, nc + 5, len(anchors_px), len(anchors_px[0])
        strides = [float(s) for s in (options().strides or (8, 16, 32, 64)[:len(ch)])]
        # divided in Python, not as tensors: under the meta device of the stride probe a tensor division would load
        # torch's compiler stack (about 1.7 s of every command's start)
        self.register_buffer("anchors", torch.tensor([[(w / s, h / s) for w, h in level]
                                                      for level, s in zip(anchors_px, strides)]))
        self.register_buffer("stride", torch.tensor(strides), persistent=False)
        self.m = nn.ModuleList(nn.Conv2d(c, self.no * self.na, 1) for c in ch)

    def _grids(self, i: int, ny: int, nx: int, dtype):
        d = self.anchors.device
        shape = (1, self.na, ny, nx, 2)
        yv, xv = torch.meshgrid(torch.arange(ny, device=d, dtype=dtype), torch.arange(nx, device=d, dtype=dtype),
                                indexing="ij")
        grid = torch.stack((xv, yv), 2).expand(shape) - 0.5
        return grid, (self.anchors[i] * self.stride[i]).view(1, self.na, 1, 1, 2).expand(shape)

    def decode(self, raw, nm: int = 0):
        z = []
        for i, t in enumerate(raw):
            bs, _, ny, nx = t.shape
            t = t.view(bs, self.na, self.no, ny, nx).permute(0, 1, 3, 4, 2).contiguous()
            grid, anchor_grid = self._grids(i, ny, nx, t.dtype)
            xy, wh, conf, coefficients = t.split((2, 2, self.nc + 1, nm), 4)
            xy = (xy.sigmoid() * 2 + grid) * self.stride[i]
            wh = (wh.sigmoid() * 2) ** 2 * anchor_grid
            z.append(torch.cat((xy, wh, conf.sigmoid(), coefficients), 4).view(bs, self.na * ny * nx, self.no))
        return torch.cat(z, 1)

    def forward(self, xs):
        return self.decode([m(x) for m, x in zip(self.m, xs)])


class Proto(nn.Module):
    """cv1 3x3 -> nearest x2 -> cv2 3x3 -> cv3 1x1 (each with BN and SiLU)."""

    def __init__(self, c1: int, c_: int = 256, c2: int = 32):
        super().__init__()
        self.cv1 = Conv(c1, c_, 3)
        self.upsample = nn.Upsample(scale_factor=2.0, mode="nearest")
        self.cv2 = Conv(c_, c_, 3)
        self.cv3 = Conv(c_, c2, 1)

    def forward(self, x):
        return self.cv3(self.cv2(self.upsample(self.cv1(x))))


class Segment(Detect):
    def __init__(self, nc: int, anchors, nm: int, npr: int, ch: Sequence[int]):
        super().__init__(nc, anchors, ch)
        self.nm, self.npr = nm, npr
        self.no = nc + 5 + nm
        self.m = nn.ModuleList(nn.Conv2d(c, self.no * self.na, 1) for c in ch)
        self.proto = Proto(ch[0], npr, nm)

    def forward(self, xs):
        return self.decode([m(x) for m, x in zip(self.m, xs)], self.nm), self.proto(xs[0])


# ----------------------------------------------------------------------------------------------- the network


def decode_with_layers(net, feat, stride: int, anchors_px: np.ndarray, num_outputs: int, name: str):
    """With y = sigmoid(t) per (anchor, cell, column), every column is y*y*A + y*B + G: x, y columns B = 2 stride,
    G = (cell - 0.5) stride; w, h columns A = 4 anchor; the rest B = 1. No slicing of the dynamic batch."""
    _, _, h, w = feat.shape
    na, no = len(anchors_px), num_outputs
    t = layers.reshape(net, feat, (0, na, no, h * w), f"{name}/view")
    t = layers.transpose(net, t, (0, 1, 3, 2), f"{name}/permute")                      # (B, na, HW, no)
    y = layers.activation(net, t, "sigmoid", f"{name}/sigmoid")
    quadratic = np.zeros((1, na, 1, no), np.float32)
    quadratic[0, :, 0, 2:4] = 4.0 * anchors_px
    linear = np.zeros((1, 1, 1, no), np.float32)
    linear[..., 0:2], linear[..., 4:] = 2.0 * stride, 1.0
    gy, gx = np.meshgrid(np.arange(h, dtype=np.float32), np.arange(w, dtype=np.float32), indexing="ij")
    cells = np.stack([gx.reshape(-1), gy.reshape(-1)], axis=1)[None, None]            # (1, 1, HW, 2)
    spread = np.zeros((1, 1, 2, no), np.float32)
    spread[0, 0, 0, 0] = spread[0, 0, 1, 1] = 1.0
    offset = net.add_matrix_multiply(layers.constant(net, (cells - 0.5) * stride, f"{name}/cells"),
                                     trt.MatrixOperation.NONE,
                                     layers.constant(net, spread, f"{name}/spread"), trt.MatrixOperation.NONE)
    offset = layers.named(offset, f"{name}/offset")                                    # (1, 1, HW, no)
    dtype = layers.weight_dtype(y)
    yy = layers.multiply(net, y, y, f"{name}/square")
    out = layers.add(net, layers.multiply(net, yy, layers.constant(net, quadratic.astype(dtype), f"{name}/A"),
                                          f"{name}/quadratic"),
                     layers.multiply(net, y, layers.constant(net, linear.astype(dtype), f"{name}/B"),
                                     f"{name}/linear"), f"{name}/sum")
    out = layers.add(net, out, layers.cast(net, offset, y.dtype, f"{name}/offset_cast") if dtype != np.float32
                     else offset, f"{name}/boxes")
    return layers.reshape(net, out, (0, na * h * w, no), name)


def _split_head_conv(net, weights, prefix: str, feat, na: int, box_outputs: int, mask_outputs: int):
    """Segment's head conv as two convolutions: the decoded fields and the raw mask coefficients, each keeping the
    (anchor, field) layout."""
    no = box_outputs + mask_outputs
    w = weights.take(f"{prefix}.weight", (na * no, feat.shape[1], 1, 1))
    b = weights.take(f"{prefix}.bias", (na * no,))
    field = np.arange(na * no) % no
    box, mask = field < box_outputs, field >= box_outputs
    return (layers.conv2d_arrays(net, weights, f"{prefix}/boxes", feat, w[box], b[box]),
            layers.conv2d_arrays(net, weights, f"{prefix}/masks", feat, w[mask], b[mask]))


def _rows(net, feat, na: int, fields: int, name: str):
    """(B, na*fields, H, W) -> (B, na*H*W, fields) FP32."""
    _, _, h, w = feat.shape
    t = layers.reshape(net, feat, (0, na, fields, h * w), f"{name}/view")
    t = layers.transpose(net, t, (0, 1, 3, 2), f"{name}/permute")
    t = layers.reshape(net, t, (0, na * h * w, fields), name)
    return t if t.dtype == trt.float32 else layers.cast(net, t, trt.float32, f"{name}/fp32")


def _take_anchor_keys(weights, prefix: str) -> None:
    """The anchors came from the table (and were checked against the weights): mark their keys, and tensorrtx's
    extra ones, as used."""
    for key in ("anchors", "anchor_grid", "strides"):
        if f"{prefix}.{key}" in weights:
            weights.raw(f"{prefix}.{key}")


def detect(net, weights, prefix: str, xs, nc: int, anchors, ch, nm: int = 0):
    anchors_px = np.asarray(_anchors_px(anchors, len(xs)), np.float32)
    na, box_outputs = anchors_px.shape[1], nc + 5
    decoded = []
    for i, (feat, stride) in enumerate(zip(xs, options().strides)):
        name = f"{prefix}/decode{i}"
        if nm:
            raw, coefficients = _split_head_conv(net, weights, f"{prefix}.m.{i}", feat, na, box_outputs, nm)
        else:
            raw = layers.conv2d(net, weights, f"{prefix}.m.{i}", feat, na * box_outputs, 1)
        if options().decode == "plugin":
            boxes = add_decode(net, raw, stride=stride, anchors=anchors_px[i].reshape(-1), num_outputs=box_outputs,
                               name=name)
        else:  # box arithmetic in FP32 whatever the network's precision (the plugin computes in FP32 too)
            if raw.dtype != trt.float32:
                raw = layers.cast(net, raw, trt.float32, f"{prefix}.m.{i}/fp32")
            boxes = decode_with_layers(net, raw, stride, anchors_px[i], box_outputs, name)
        if nm:
            boxes = layers.concat(net, [boxes, _rows(net, coefficients, na, nm, f"{name}/masks")],
                                  f"{name}/with_masks", axis=2)
        decoded.append(boxes)
    _take_anchor_keys(weights, prefix)
    return layers.concat(net, decoded, prefix, axis=1)


def proto(net, weights, prefix: str, p3, c_: int, c2: int):
    y = conv(net, weights, f"{prefix}.cv1", p3, p3.shape[1], c_, 3)
    y = layers.upsample_nearest(net, y, f"{prefix}.upsample")
    y = conv(net, weights, f"{prefix}.cv2", y, c_, c_, 3)
    return layers.rename(conv(net, weights, f"{prefix}.cv3", y, c_, c2, 1), prefix)


def segment(net, weights, prefix: str, xs, nc: int, anchors, nm: int, npr: int, ch):
    return [detect(net, weights, prefix, xs, nc, anchors, ch, nm),
            proto(net, weights, f"{prefix}.proto", xs[0], npr, nm)]


def resolve(row):
    """[nc, anchors, (nm, npr scaled,) ch]: YOLOv5's rule scales npr by the width multiple."""
    args = list(row.args)
    if len(args) < 2:
        raise TableError(f"{row.where()}: a YOLOv5 head takes [nc, anchors, ...], got {row.args!r}")
    if row.name == "Segment":
        args = (args + [32, 256])[:4]
        args[3] = make_divisible(args[3] * row.width, 8)
    else:
        args = args[:2]
    return [*args, list(row.inputs)], row.inputs[0]


register(Block("yolov5.Detect", Detect, detect, resolve=resolve, head=True),
         Block("yolov5.Segment", Segment, segment, resolve=resolve, head=True))
