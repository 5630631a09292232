"""PyTorch reference of YOLOv5 v7.0's other two tasks, from the facts in docs/yolov5.md (segment and classify).

- **segment** (`yolov5{n,s,...}-seg`): the detector with a `Segment` head: each anchor predicts 5 + nc + nm values
  (the nm = 32 mask coefficients after the class scores, left raw by the decode), and `proto` = Proto on the P3
  input: Conv 3x3 -> nearest x2 upsample -> Conv 3x3 -> Conv 1x1 to nm prototype masks at 1/4 of the input.
  `forward` returns (decoded (B, N, 5 + nc + nm), protos (B, nm, H/4, W/4)).
- **classify** (`yolov5{n,s,...}-cls`): layers 0-8 of the P5 backbone, then `Classify` at index 9 (where SPPF was):
  Conv 1x1 to 1280 -> global average pool -> flatten -> Dropout (identity in eval) -> Linear. `forward` returns
  logits, as upstream's ClassificationModel; the softmax belongs to the post-processing.

Attribute names are upstream's state_dict contract (`model.24.proto.cv1.conv.weight`, `model.9.linear.weight`).
"""
from __future__ import annotations

import math
from typing import Sequence

import torch
from torch import nn

from .model import (ANCHORS_P5, ANCHORS_P6, STRIDES_P5, STRIDES_P6, Conv, Detect, YoloV5, randomize_,
                    scale_width)

CLASSIFY_HIDDEN = 1280  # Classify's 1x1 conv width, fixed upstream


class Proto(nn.Module):
    """Prototype masks: cv1 3x3 -> nearest x2 -> cv2 3x3 -> cv3 1x1 (every conv with BN and SiLU)."""

    def __init__(self, c1: int, c_: int = 256, c2: int = 32):
        super().__init__()
        self.cv1 = Conv(c1, c_, 3)
        self.upsample = nn.Upsample(scale_factor=2.0, mode="nearest")
        self.cv2 = Conv(c_, c_, 3)
        self.cv3 = Conv(c_, c2, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.cv3(self.cv2(self.upsample(self.cv1(x))))


class Segment(Detect):
    """Detect with nm mask coefficients per anchor (raw: no sigmoid) and a Proto branch on the first level."""

    def __init__(self, nc: int, anchors_px, ch: Sequence[int], strides: Sequence[int], nm: int = 32,
                 npr: int = 256):
        super().__init__(nc, anchors_px, ch, strides)
        self.nm, self.npr = nm, npr
        self.no = nc + 5 + nm
        self.m = nn.ModuleList(nn.Conv2d(c, self.no * self.na, 1) for c in ch)
        self.proto = Proto(ch[0], npr, nm)

    def decode(self, raw: Sequence[torch.Tensor]) -> torch.Tensor:
        """(B, N, 5 + nc + nm): xywh in input pixels, sigmoided obj and classes, raw mask coefficients."""
        z = []
        for i, t in enumerate(raw):
            bs, _, ny, nx = t.shape
            t = t.view(bs, self.na, self.no, ny, nx).permute(0, 1, 3, 4, 2).contiguous()
            grid, anchor_grid = self._grids(i, ny, nx, t.dtype)
            xy, wh, conf, coefficients = t.split((2, 2, self.nc + 1, self.nm), 4)
            xy = (xy.sigmoid() * 2 + grid) * self.stride[i]
            wh = (wh.sigmoid() * 2) ** 2 * anchor_grid
            z.append(torch.cat((xy, wh, conf.sigmoid(), coefficients), 4).view(bs, self.na * ny * nx, self.no))
        return torch.cat(z, 1)

    def forward(self, xs: Sequence[torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
        return self.decode(self.raw(xs)), self.proto(xs[0])


class YoloV5Segment(YoloV5):
    """YOLOv5 v7.0 segmentation: the detector's graph with a Segment head (npr prototype channels, nm masks)."""

    def __init__(self, num_classes: int = 80, depth_multiple: float = 0.33, width_multiple: float = 0.50,
                 p6: bool = False, anchors=None, num_masks: int = 32, num_protos: int | None = None):
        super().__init__(num_classes, depth_multiple, width_multiple, p6, anchors)
        old = self.detect
        ch = [conv.in_channels for conv in old.m]
        if anchors is None:
            anchors = ANCHORS_P6 if p6 else ANCHORS_P5
        npr = num_protos if num_protos is not None else scale_width(256, width_multiple)
        head = Segment(num_classes, anchors, ch, STRIDES_P6 if p6 else STRIDES_P5, num_masks, npr)
        head.i, head.f = old.i, old.f
        self.model[-1] = head
        self.num_masks, self.num_protos = num_masks, npr


class Classify(nn.Module):
    """Conv(c1, 1280, 1) -> AdaptiveAvgPool2d(1) -> flatten -> Dropout -> Linear(1280, nc); returns logits."""

    def __init__(self, c1: int, c2: int, hidden: int = CLASSIFY_HIDDEN):
        super().__init__()
        self.conv = Conv(c1, hidden, 1)
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.drop = nn.Dropout(p=0.0)
        self.linear = nn.Linear(hidden, c2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.linear(self.drop(self.pool(self.conv(x)).flatten(1)))


class YoloV5Classify(nn.Module):
    """YOLOv5 v7.0 classification: P5 backbone layers 0-8, then Classify at index 9 (upstream cuts at SPPF)."""

    def __init__(self, num_classes: int = 1000, depth_multiple: float = 0.33, width_multiple: float = 0.50):
        super().__init__()
        self.num_classes = num_classes
        self.depth_multiple, self.width_multiple = depth_multiple, width_multiple
        detector = YoloV5(1, depth_multiple, width_multiple, p6=False)
        backbone = list(detector.model[:9])
        head = Classify(detector.model[9].cv1.conv.in_channels, num_classes)
        head.i, head.f = 9, -1
        self.model = nn.Sequential(*backbone, head)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.model(x)


@torch.no_grad()
def randomize_task_(model: nn.Module, seed: int = 0, calib_size: int = 256) -> nn.Module:
    """`randomize_` (seeded convs, BatchNorm statistics from a calibration pass), plus seeded Linear layers whose
    logits spread over a few units, so a softmax of random weights is not flat."""
    g = torch.Generator().manual_seed(seed + 1)
    for m in model.modules():
        if isinstance(m, nn.Linear):
            m.weight.copy_(torch.randn(m.weight.shape, generator=g) * (1.0 / math.sqrt(m.in_features)))
            m.bias.copy_(torch.randn(m.bias.shape, generator=g) * 0.5)
    return randomize_(model, seed, calib_size)


def random_yolov5_segment(variant: str = "n", num_classes: int = 80, seed: int = 0, p6: bool = False,
                          num_masks: int = 32, calib_size: int = 256) -> YoloV5Segment:
    """Seeded random weights (see `randomize_`; `calib_size`: the BatchNorm calibration images' side)."""
    from .model import parse_variant
    gd, gw, v_p6 = parse_variant(variant)
    module = YoloV5Segment(num_classes, gd, gw, p6 or v_p6, num_masks=num_masks)
    return randomize_task_(module, seed, calib_size).eval()


def random_yolov5_classify(variant: str = "n", num_classes: int = 1000, seed: int = 0,
                           calib_size: int = 256) -> YoloV5Classify:
    from .model import parse_variant
    gd, gw, p6 = parse_variant(variant)
    if p6:
        raise ValueError("YOLOv5 classification models are built from the P5 backbone; no P6 variant exists")
    return randomize_task_(YoloV5Classify(num_classes, gd, gw), seed, calib_size).eval()
