"""PyTorch reference of the YOLOv8 / YOLO11 heads beyond detection, from the facts in docs/yolov8.md ("Other
tasks"). Each is a subclass of zoo.yolov8.model.Detect (the box and class branches and the decode are shared):

- Segment: Detect + `cv4[i]` (Conv 3x3, Conv 3x3, Conv2d 1x1 -> nm mask coefficients per anchor, raw) and `proto`
  (Conv 3x3 -> ConvTranspose2d(2, stride 2, bias) -> Conv 3x3 -> Conv 1x1 to nm masks at 1/4 of the input).
  forward: ((B, 4 + nc + nm, A), protos (B, nm, H/4, W/4)).
- Pose: Detect + `cv4[i]` -> K*D keypoint values per anchor; x = (raw * 2 + cell_x) * stride, y likewise,
  visibility = sigmoid(raw) when D = 3. forward: (B, 4 + nc + K*D, A).
- OBB: Detect + `cv4[i]` -> 1 angle logit; angle = (sigmoid - 0.25) * pi; boxes decode rotated (the DFL distances
  l, t, r, b turned by the angle around the anchor). forward: (B, 4 + nc + 1, A) [xywh, scores, angle].
- Classify: the backbone only (YOLOv8: layers 0-8; YOLO11: 0-8 then C2PSA at 9), then Conv 1x1 to 1280 -> global
  average pool -> flatten -> Dropout -> Linear, softmax in eval. forward: (B, nc) probabilities.
Attribute names are ultralytics' state_dict contract (`model.22.proto.upsample.weight`, `model.22.cv4.0.2.bias`,
`model.9.linear.weight`).
"""
from __future__ import annotations

import functools
import math
from typing import Sequence

import torch
from torch import nn

from .model import (C2PSA, Architecture, Conv, Detect, YoloV8, _layers_11, _layers_v8, anchor_points, randomize_)

TASKS = ("detect", "segment", "pose", "obb", "classify")
CLASSIFY_HIDDEN = 1280


def _extra_branch(ch: Sequence[int], hidden: int, outputs: int) -> nn.ModuleList:
    """cv4: per level Conv 3x3, Conv 3x3, Conv2d 1x1 (with bias)."""
    return nn.ModuleList(nn.Sequential(Conv(x, hidden, 3), Conv(hidden, hidden, 3), nn.Conv2d(hidden, outputs, 1))
                         for x in ch)


def _flat(outputs: list[torch.Tensor]) -> torch.Tensor:
    """Per-level (B, C, H, W) -> (B, C, A), levels concatenated."""
    return torch.cat([o.reshape(o.shape[0], o.shape[1], -1) for o in outputs], 2)


class Proto(nn.Module):
    """Prototype masks: cv1 3x3 -> ConvTranspose2d(2, 2) -> cv2 3x3 -> cv3 1x1."""

    def __init__(self, c1: int, c_: int = 256, c2: int = 32):
        super().__init__()
        self.cv1 = Conv(c1, c_, 3)
        self.upsample = nn.ConvTranspose2d(c_, c_, 2, 2, 0, bias=True)
        self.cv2 = Conv(c_, c_, 3)
        self.cv3 = Conv(c_, c2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.cv3(self.cv2(self.upsample(self.cv1(x))))


class Segment(Detect):
    def __init__(self, nc, ch, strides, reg_max, depthwise, nm: int = 32, npr: int = 256):
        super().__init__(nc, ch, strides, reg_max, depthwise)
        self.nm, self.npr = nm, npr
        self.proto = Proto(ch[0], npr, nm)
        self.cv4 = _extra_branch(ch, max(ch[0] // 4, nm), nm)

    def forward(self, xs):
        coefficients = _flat([branch(x) for branch, x in zip(self.cv4, xs)])
        return torch.cat((self.decode(self.branches(xs)), coefficients), 1), self.proto(xs[0])


class Pose(Detect):
    def __init__(self, nc, ch, strides, reg_max, depthwise, kpt_shape: tuple[int, int] = (17, 3)):
        super().__init__(nc, ch, strides, reg_max, depthwise)
        self.kpt_shape = tuple(kpt_shape)
        self.nk = kpt_shape[0] * kpt_shape[1]
        self.cv4 = _extra_branch(ch, max(ch[0] // 4, self.nk), self.nk)

    def decode_keypoints(self, raw: torch.Tensor, sizes) -> torch.Tensor:
        """(B, K*D, A) raw -> keypoints in input pixels; channel k*D + d is dimension d of keypoint k."""
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


def rotated_boxes(distances: torch.Tensor, angle: torch.Tensor, anchors: torch.Tensor) -> torch.Tensor:
    """(B, 4, A) distances (l, t, r, b), (B, 1, A) angle, (2, A) anchor points -> (B, 4, A) rotated centre xy and
    wh, grid units: the box's own centre offset ((r - l) / 2, (b - t) / 2) turned by the angle."""
    lt, rb = distances.chunk(2, 1)
    xf, yf = ((rb - lt) / 2).chunk(2, 1)
    cos, sin = angle.cos(), angle.sin()
    xy = torch.cat((xf * cos - yf * sin, xf * sin + yf * cos), 1) + anchors
    return torch.cat((xy, lt + rb), 1)


class OBB(Detect):
    def __init__(self, nc, ch, strides, reg_max, depthwise, ne: int = 1):
        super().__init__(nc, ch, strides, reg_max, depthwise)
        self.ne = ne
        self.cv4 = _extra_branch(ch, max(ch[0] // 4, ne), ne)
        self._angle = None

    def decode_boxes(self, box, anchors, strides):
        return rotated_boxes(self.dfl(box), self._angle, anchors) * strides

    def forward(self, xs):
        angle = (_flat([branch(x) for branch, x in zip(self.cv4, xs)]).sigmoid() - 0.25) * math.pi
        self._angle = angle
        try:
            return torch.cat((self.decode(self.branches(xs)), angle), 1)
        finally:
            self._angle = None


class Classify(nn.Module):
    """Conv(c1, 1280, 1) -> AdaptiveAvgPool2d(1) -> flatten -> Dropout -> Linear(1280, nc) -> softmax (eval)."""

    def __init__(self, c1: int, c2: int, hidden: int = CLASSIFY_HIDDEN):
        super().__init__()
        self.conv = Conv(c1, hidden, 1)
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.drop = nn.Dropout(p=0.0)
        self.linear = nn.Linear(hidden, c2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.linear(self.drop(self.pool(self.conv(x)).flatten(1))).softmax(1)


class YoloV8Classify(nn.Module):
    """YOLOv8-cls (layers 0-8, Classify at 9) or YOLO11-cls (layers 0-8, C2PSA at 9, Classify at 10)."""

    def __init__(self, arch: Architecture):
        super().__init__()
        self.arch = arch
        layers = [m for _, m in (_layers_v8 if arch.family == "yolov8" else _layers_11)(arch, Detect)[:9]]
        top = arch.scaling.channels(1024)
        if arch.family == "yolo11":
            repeats = arch.scaling.repeats(2) if arch.c2psa_repeats is None else arch.c2psa_repeats
            layers.append(C2PSA(top, top, repeats))
        layers.append(Classify(top, arch.num_classes))
        for i, m in enumerate(layers):
            m.i, m.f = i, -1
        self.model = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.model(x)


def classify_index(family: str) -> int:
    return 9 if family == "yolov8" else 10


def task_module(arch: Architecture, task: str, num_masks: int = 32, num_protos: int | None = None,
                kpt_shape: Sequence[int] = (17, 3)) -> nn.Module:
    """The reference module of `task` on `arch` (num_protos None: 256 scaled like a channel count)."""
    if task == "classify":
        return YoloV8Classify(arch)
    if task == "segment":
        npr = arch.scaling.channels(256) if num_protos is None else num_protos
        return YoloV8(arch, functools.partial(Segment, nm=num_masks, npr=npr))
    if task == "pose":
        return YoloV8(arch, functools.partial(Pose, kpt_shape=tuple(kpt_shape)))
    if task == "obb":
        return YoloV8(arch, OBB)
    if task == "detect":
        return YoloV8(arch)
    raise ValueError(f"unknown task {task!r}; known: {TASKS}")


@torch.no_grad()
def randomize_task_(model: nn.Module, seed: int = 0, calib_size: int = 128) -> nn.Module:
    """zoo.yolov8.model.randomize_ (convs, BatchNorm statistics from a calibration pass), with the layers it does
    not know seeded first: the transposed convolution (N(0, 1/fan_in)) and Linear layers (logits spread over a few
    units, so a softmax of random weights is not flat)."""
    g = torch.Generator().manual_seed(seed + 7)
    for m in model.modules():
        if isinstance(m, nn.ConvTranspose2d):
            m.weight.copy_(torch.randn(m.weight.shape, generator=g) / math.sqrt(m.in_channels))
            m.bias.copy_(torch.randn(m.bias.shape, generator=g) * 0.1)
        elif isinstance(m, nn.Linear):
            m.weight.copy_(torch.randn(m.weight.shape, generator=g) / math.sqrt(m.in_features))
            m.bias.copy_(torch.randn(m.bias.shape, generator=g) * 0.5)
    return randomize_(model, seed, calib_size)
