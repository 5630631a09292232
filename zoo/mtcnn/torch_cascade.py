"""The MTCNN cascade in plain PyTorch eager: the baseline that `validate --photos` and `bench` hold the zoo to.

Written apart from the zoo's path (cascade.py, resample.py, zoo.vision.nms) on purpose: it runs the PyTorch
reference modules, resizes with torch's own `interpolate(mode="area")` crop by crop, and suppresses with a plain
loop, following the steps of facenet-pytorch's detect_face (MIT, read for the facts) one image at a time. Two
independent readings of the same procedure: where they agree, neither has a bug the other lacks.
"""
from __future__ import annotations

import time

import numpy as np
import torch
import torch.nn.functional as F


class _Clock:
    """Seconds per stage for `bench`; the NMS calls are counted apart from the stage that makes them."""

    def __init__(self, times: dict | None):
        self.times = times if times is not None else {}
        self.stage, self.start, self.nms = None, 0.0, 0.0

    def enter(self, stage: str | None) -> None:
        now = time.perf_counter()
        if self.stage is not None:
            self.times[self.stage] = self.times.get(self.stage, 0.0) + now - self.start - self.nms
            self.times["nms"] = self.times.get("nms", 0.0) + self.nms
        self.stage, self.start, self.nms = stage, now, 0.0

    def suppress(self, *args, **kwargs) -> list[int]:
        start = time.perf_counter()
        kept = _suppress(*args, **kwargs)
        self.nms += time.perf_counter() - start
        return kept


def _normalized(pixels: torch.Tensor) -> torch.Tensor:
    return (pixels - 127.5) * 0.0078125


def _suppress(boxes: torch.Tensor, scores: torch.Tensor, threshold: float, use_min: bool = False) -> list[int]:
    """Greedy NMS, one box at a time: the indices kept, best score first."""
    b, s = boxes.tolist(), scores.tolist()
    pad = 1.0 if use_min else 0.0
    area = [(x2 - x1 + pad) * (y2 - y1 + pad) for x1, y1, x2, y2 in b]
    kept: list[int] = []
    for i in sorted(range(len(s)), key=lambda i: (-s[i], i)):
        for j in kept:
            iw = min(b[i][2], b[j][2]) - max(b[i][0], b[j][0]) + pad
            ih = min(b[i][3], b[j][3]) - max(b[i][1], b[j][1]) + pad
            inter = max(iw, 0.0) * max(ih, 0.0)
            overlap = inter / min(area[i], area[j]) if use_min else inter / (area[i] + area[j] - inter)
            if overlap > threshold:
                break
        else:
            kept.append(i)
    return kept


def _make_square(b: torch.Tensor) -> torch.Tensor:
    b = b.clone()
    h, w = b[:, 3] - b[:, 1], b[:, 2] - b[:, 0]
    side = torch.max(w, h)
    b[:, 0] += w * 0.5 - side * 0.5
    b[:, 1] += h * 0.5 - side * 0.5
    b[:, 2] = b[:, 0] + side
    b[:, 3] = b[:, 1] + side
    return b


def _apply_offsets(b: torch.Tensor, reg: torch.Tensor) -> torch.Tensor:
    w, h = b[:, 2] - b[:, 0] + 1, b[:, 3] - b[:, 1] + 1
    out = b.clone()
    out[:, 0] += reg[:, 0] * w
    out[:, 1] += reg[:, 1] * h
    out[:, 2] += reg[:, 2] * w
    out[:, 3] += reg[:, 3] * h
    return out


def _cut(img: torch.Tensor, boxes: torch.Tensor, size: int):
    """Crops resized to size x size with torch's area interpolation, and which boxes had a non-empty crop."""
    h, w = img.shape[2:]
    crops, valid = [], []
    for x1, y1, x2, y2 in boxes.trunc().int().tolist():
        x, y, ex, ey = max(x1, 1), max(y1, 1), min(x2, w), min(y2, h)
        if ey > y - 1 and ex > x - 1:
            crops.append(F.interpolate(img[:, :, y - 1:ey, x - 1:ex], size=(size, size), mode="area"))
            valid.append(True)
        else:
            valid.append(False)
    batch = torch.cat(crops) if crops else img.new_zeros((0, 3, size, size))
    return _normalized(batch), torch.tensor(valid, dtype=torch.bool)


@torch.inference_mode()
def detect_faces(image_rgb: np.ndarray, pnet, rnet, onet, min_face: int = 20, factor: float = 0.709,
                 thresholds=(0.6, 0.7, 0.7), times: dict | None = None):
    """(boxes (K, 4), scores (K,), landmarks (K, 5, 2)) as numpy float32, for one RGB uint8 photo. `times`, when
    given, gets the seconds of each stage added ("pnet" with the pyramid, "rnet", "onet", "nms")."""
    clock = _Clock(times)
    clock.enter("pnet")
    try:
        return _cascade(image_rgb, pnet, rnet, onet, min_face, factor, thresholds, clock)
    finally:
        clock.enter(None)


def _cascade(image_rgb, pnet, rnet, onet, min_face, factor, thresholds, clock: _Clock):
    img = torch.as_tensor(np.ascontiguousarray(image_rgb)).permute(2, 0, 1)[None].float()
    h, w = img.shape[2:]
    empty = (np.zeros((0, 4), np.float32), np.zeros(0, np.float32), np.zeros((0, 5, 2), np.float32))

    # stage 1: the pyramid through P-Net
    m = 12.0 / min_face
    scales, side = [], min(h, w) * m
    while side >= 12:
        scales.append(m)
        m *= factor
        side *= factor
    rows = []
    for s in scales:
        level = _normalized(F.interpolate(img, size=(int(h * s + 1), int(w * s + 1)), mode="area"))
        prob, reg = pnet(level)
        face = prob[0, 1]
        ys, xs = torch.where(face >= thresholds[0])
        x1 = ((2 * xs.float() + 1) / s).floor()
        y1 = ((2 * ys.float() + 1) / s).floor()
        x2 = ((2 * xs.float() + 12) / s).floor()
        y2 = ((2 * ys.float() + 12) / s).floor()
        cand = torch.stack([x1, y1, x2, y2, face[ys, xs], *reg[0, :, ys, xs]], 1)
        rows.append(cand[clock.suppress(cand[:, :4], cand[:, 4], 0.5)])
    if not rows:
        return empty
    cand = torch.cat(rows)
    cand = cand[clock.suppress(cand[:, :4], cand[:, 4], 0.7)]
    bw, bh = cand[:, 2] - cand[:, 0], cand[:, 3] - cand[:, 1]
    boxes = torch.stack([cand[:, 0] + cand[:, 5] * bw, cand[:, 1] + cand[:, 6] * bh,
                         cand[:, 2] + cand[:, 7] * bw, cand[:, 3] + cand[:, 8] * bh], 1)
    boxes = _make_square(boxes)
    if not len(boxes):
        return empty

    # stage 2: R-Net on 24x24 crops
    clock.enter("rnet")
    crops, valid = _cut(img, boxes, 24)
    boxes = boxes[valid]
    prob, reg = rnet(crops)
    score = prob[:, 1]
    passed = score > thresholds[1]
    boxes, score, reg = boxes[passed], score[passed], reg[passed]
    keep = clock.suppress(boxes, score, 0.7)
    boxes = _make_square(_apply_offsets(boxes[keep], reg[keep]))
    if not len(boxes):
        return empty

    # stage 3: O-Net on 48x48 crops, landmarks, 'Min' suppression
    clock.enter("onet")
    crops, valid = _cut(img, boxes, 48)
    boxes = boxes[valid]
    prob, reg, marks = onet(crops)
    score = prob[:, 1]
    passed = score > thresholds[2]
    boxes, score, reg, marks = boxes[passed], score[passed], reg[passed], marks[passed]
    bw, bh = boxes[:, 2] - boxes[:, 0] + 1, boxes[:, 3] - boxes[:, 1] + 1
    points = torch.stack([bw[:, None] * marks[:, :5] + boxes[:, :1] - 1,
                          bh[:, None] * marks[:, 5:] + boxes[:, 1:2] - 1], 2)
    boxes = _apply_offsets(boxes, reg)
    keep = clock.suppress(boxes, score, 0.7, use_min=True)
    return boxes[keep].numpy(), score[keep].numpy(), points[keep].numpy()
