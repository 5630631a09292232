"""YOLO26's two dense-prediction heads (facts: docs/yolo26-dense.md).

SemanticSegment: `classifier` = Conv 3x3 (P3 width) -> Conv2d 1x1 to nc on the P3 input: per-pixel class logits at
1/8 of the input (upstream's eval output). `aux_head` (the same on P4) only trains; its weights are accepted, not
built. The network adds upstream's TensorRT export output beside the logits: the logits upsampled x8 (bilinear,
half-pixel, i.e. align_corners=False), reduced to the class id of each pixel (top-1 over channels; nc = 1:
logit > 0), uint8 when nc <= 256 else int32, named `<prefix>.classes`, shape (B, H, W).

Depth: every level projected to c_mid by a 1x1 Conv (`proj`); from the coarsest, upsample x2 (bilinear,
align_corners=True), add the next level, refine by two 3x3 Convs (`refine.i`); then `head` = Conv 3x3 to c_mid/2,
ConvTranspose2d 2x2 stride 2, Conv 3x3 to c_mid/4, Conv2d 1x1 to 1; clamp to [-4, 5] (log metres); depth =
exp(cal_a * log + cal_b) at 1/4 of the input (upstream's eval output, named `<prefix>`), and the same upsampled x4
(bilinear, align_corners=True: upstream's export output) at the input size, named `<prefix>.full`.
"""
from __future__ import annotations

from typing import Mapping, Sequence

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

import layers
from zoo.trt_api import trt
from zoo.yolo.registry import Block, TableError, register

from .conv import Conv, conv

CLASSES, FULL = ".classes", ".full"   # the names of the baked outputs after the head's: model.<i>.classes ...
LOG_DEPTH_RANGE = (-4.0, 5.0)   # upstream clamps the head's log-depth (metres) to this before the calibration


class SemanticSegment(nn.Module):
    """forward: class logits (B, nc, H/8, W/8) of the P3 input."""

    def __init__(self, nc: int = 19, ch: Sequence[int] = ()):
        super().__init__()
        self.nc, self.nl = nc, len(ch)
        c_mid = ch[0]
        self.classifier = nn.Sequential(Conv(c_mid, c_mid, 3), nn.Conv2d(c_mid, nc, 1))
        self.aux_head = nn.Sequential(Conv(ch[1], c_mid, 3), nn.Conv2d(c_mid, nc, 1)) if len(ch) > 1 else None

    def forward(self, xs):
        return self.classifier(xs[0])


def class_map_reference(logits: torch.Tensor, factor: int = 8) -> torch.Tensor:
    """What the network's `.classes` output computes, in PyTorch: (B, H, W) class ids of the upsampled logits."""
    y = F.interpolate(logits.float(), scale_factor=factor, mode="bilinear", align_corners=False)
    classes = y.argmax(1) if y.shape[1] > 1 else (y[:, 0] > 0)
    return classes.to(torch.uint8 if y.shape[1] <= 256 else torch.int32)


def class_map(net, logits, nc: int, name: str, factor: int = 8):
    """Logits (B, nc, h, w) -> class ids (B, factor*h, factor*w) on the network."""
    y = layers.upsample_linear(net, logits, f"{name}/upsample", factor, align_corners=False)
    if nc == 1:
        zero = layers.constant(net, np.zeros((1, 1, 1, 1), layers.weight_dtype(y)), f"{name}/zero")
        ids = layers.named(net.add_elementwise(y, zero, trt.ElementWiseOperation.GREATER), f"{name}/positive")
    else:
        ids = layers.named(net.add_topk(y, trt.TopKOperation.MAX, 1, 1 << 1), f"{name}/top1", output=1)
    ids = layers.reshape(net, ids, (0, *y.shape[2:]), f"{name}/map")
    return layers.cast(net, ids, trt.uint8 if nc <= 256 else trt.int32, name)


def semantic_segment(net, weights, prefix: str, xs, nc: int, ch):
    """Outputs `prefix` (the logits) and `prefix.classes` (the class map at the input size)."""
    c_mid = ch[0]
    y = conv(net, weights, f"{prefix}.classifier.0", xs[0], c_mid, c_mid, 3)
    logits = layers.rename(layers.conv2d(net, weights, f"{prefix}.classifier.1", y, nc, 1), prefix)
    layers.mark_auxiliary_used(weights, (f"{prefix}.aux_head.",))  # training-only deep supervision
    return [logits, class_map(net, logits, nc, f"{prefix}{CLASSES}")]


class Depth(nn.Module):
    """forward: (depth (B, 1, H/4, W/4), depth (B, 1, H, W)) in metres."""

    def __init__(self, c_mid: int = 256, ch: Sequence[int] = ()):
        super().__init__()
        self.nl = len(ch)
        self.proj = nn.ModuleList(Conv(c, c_mid, k=1) for c in ch)
        self.refine = nn.ModuleList(nn.Sequential(Conv(c_mid, c_mid, k=3), Conv(c_mid, c_mid, k=3)) for _ in ch[:-1])
        self.head = nn.Sequential(Conv(c_mid, c_mid // 2, k=3),
                                  nn.ConvTranspose2d(c_mid // 2, c_mid // 2, kernel_size=2, stride=2, bias=True),
                                  Conv(c_mid // 2, c_mid // 4, k=3),
                                  nn.Conv2d(c_mid // 4, 1, kernel_size=1))
        self.register_buffer("cal_a", torch.ones(1))
        self.register_buffer("cal_b", torch.zeros(1))

    def forward(self, xs):
        feats = [proj(x) for proj, x in zip(self.proj, xs)]
        out = feats[-1]
        for i in range(self.nl - 2, -1, -1):
            out = F.interpolate(out, scale_factor=2, mode="bilinear", align_corners=True)
            out = self.refine[i](out + feats[i])
        log_depth = self.head(out).clamp(*LOG_DEPTH_RANGE)
        depth = torch.exp(self.cal_a * log_depth + self.cal_b)
        return depth, F.interpolate(depth, scale_factor=4.0, mode="bilinear", align_corners=True)


def depth(net, weights, prefix: str, xs, c_mid: int, ch):
    """Outputs `prefix` (depth at 1/4 of the input) and `prefix.full` (at the input size)."""
    feats = [conv(net, weights, f"{prefix}.proj.{i}", x, c, c_mid, 1) for i, (x, c) in enumerate(zip(xs, ch))]
    out = feats[-1]
    for i in range(len(ch) - 2, -1, -1):
        out = layers.upsample_linear(net, out, f"{prefix}/up{i}", 2, align_corners=True)
        out = layers.add(net, out, feats[i], f"{prefix}/fuse{i}")
        out = conv(net, weights, f"{prefix}.refine.{i}.0", out, c_mid, c_mid, 3)
        out = layers.rename(conv(net, weights, f"{prefix}.refine.{i}.1", out, c_mid, c_mid, 3), f"{prefix}.refine.{i}")
    h = f"{prefix}.head"
    out = conv(net, weights, f"{h}.0", out, c_mid, c_mid // 2, 3)
    out = layers.conv_transpose2d(net, weights, f"{h}.1", out, c_mid // 2, 2, 2)
    out = conv(net, weights, f"{h}.2", out, c_mid // 2, c_mid // 4, 3)
    out = layers.rename(layers.conv2d(net, weights, f"{h}.3", out, 1, 1), h)
    log_depth = layers.clamp(net, out, *LOG_DEPTH_RANGE, f"{prefix}/clamp")
    cal_a, cal_b = weights.take(f"{prefix}.cal_a", (1,)), weights.take(f"{prefix}.cal_b", (1,))
    log_depth = layers.channel_affine(net, log_depth, cal_a, cal_b, f"{prefix}/calibrated")
    quarter = layers.named(net.add_unary(log_depth, trt.UnaryOperation.EXP), prefix)
    return [quarter, layers.upsample_linear(net, quarter, f"{prefix}{FULL}", 4, align_corners=True)]


# ---------------------------------------------------------------------------------------------- table rows


def semantic_resolve(row):
    """[nc, ch]: the class count as it is (upstream appends the inputs' channels)."""
    if not row.args or not isinstance(row.args[0], int) or row.args[0] < 1:
        raise TableError(f"{row.where()}: the first argument must be the class count, got {row.args!r}")
    if len(row.inputs) < 1:
        raise TableError(f"{row.where()}: SemanticSegment needs at least one input")
    return [row.args[0], list(row.inputs)], row.args[0]


def depth_resolve(row):
    """[c_mid, ch]: c_mid unscaled (upstream drops any argument after it, e.g. an old checkpoint's mode)."""
    if not row.args or not isinstance(row.args[0], int) or row.args[0] < 4 or row.args[0] % 4:
        raise TableError(f"{row.where()}: the first argument must be c_mid, a positive multiple of 4, got "
                         f"{row.args!r}")
    return [row.args[0], list(row.inputs)], 1


def head_facts(name: str, args: list, table: dict, arrays: Mapping, prefix: str) -> dict | None:
    """The table with the dense head's facts from the weights (SemanticSegment: classes; Depth: c_mid); None when
    the weights hold no such head at `prefix`."""
    if name == "SemanticSegment":
        bias = arrays.get(f"{prefix}.classifier.1.bias")
        if bias is None:
            return None
        table["nc"], args[0] = int(np.asarray(bias).size), "nc"
        return table
    mean = arrays.get(f"{prefix}.proj.0.bn.running_mean", arrays.get(f"{prefix}.proj.0.conv.bias"))
    if mean is None or f"{prefix}.cal_a" not in arrays:
        return None
    args[0] = int(np.asarray(mean).size)
    return table


_INPUT_STRIDES: dict[str, int] = {}


def input_stride(resolved, options, size: int = 256) -> int:
    """The deepest stride of a table (upstream's rule for SemanticSegment, whose head inputs stop at P4 while the
    encoder reaches P5): size over the smallest height any row outputs, from walker.shape_probe; remembered per
    layout."""
    key = repr([(layer.source, layer.block.name, layer.repeats, layer.args) for layer in resolved])
    if key not in _INPUT_STRIDES:
        _INPUT_STRIDES[key] = _deepest_stride(resolved, options, size)
    return _INPUT_STRIDES[key]


def _deepest_stride(resolved, options, size: int) -> int:
    from zoo.yolo.walker import shape_probe
    smallest = [size]

    def record(_m, _inputs, output):
        for t in output if isinstance(output, (tuple, list)) else [output]:
            if isinstance(t, torch.Tensor) and t.dim() == 4:
                smallest[0] = min(smallest[0], t.shape[-2])

    shape_probe(resolved, options, size, lambda module: [row.register_forward_hook(record) for row in module.model])
    return size // smallest[0]


register(Block("SemanticSegment", SemanticSegment, semantic_segment, resolve=semantic_resolve, head=True),
         Block("Depth", Depth, depth, resolve=depth_resolve, head=True))
