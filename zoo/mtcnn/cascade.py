"""MTCNN's cascade: an image pyramid through P-Net, candidate crops through R-Net, then O-Net for boxes and landmarks.

The parameters are facenet-pytorch's (models/utils/detect_face.py, MIT; read for the facts): minimum face 20 px,
pyramid factor 0.709, thresholds 0.6 / 0.7 / 0.7; NMS IoU 0.5 within each pyramid level, then 0.7 over all levels,
0.7 after R-Net, and 0.7 with the 'Min' overlap after O-Net. Every step is torch on the device of the networks'
runners (the GPU beside TensorRT, the CPU beside the reference backend); crops and resizes are `AreaSampler`'s.
Boxes and landmarks come back in the photo's pixels.

Box conventions, as upstream: P-Net's boxes are offset by their width x2 - x1, R-Net's and O-Net's by the
inclusive width x2 - x1 + 1; candidates are squared around their centre before each crop, and a crop covers
pixels trunc(x1) - 1 .. trunc(x2) - 1 clipped to the photo.
"""
from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Callable

import numpy as np
import torch

from zoo.vision.nms import nms_indices

from .nets import CROP_SIZE
from .resample import AreaSampler

STRIDE, CELL = 2, 12  # P-Net: one output per 2 input pixels, each seeing a 12x12 window


@dataclass(frozen=True)
class CascadeParams:
    min_face: int = 20
    factor: float = 0.709
    thresholds: tuple[float, float, float] = (0.6, 0.7, 0.7)
    nms_level: float = 0.5       # P-Net, within one pyramid level (IoU)
    nms_pyramid: float = 0.7     # P-Net, over all levels (IoU)
    nms_rnet: float = 0.7        # IoU
    nms_onet: float = 0.7        # 'Min' overlap


@dataclass
class Faces:
    boxes: torch.Tensor          # (K, 4) x1, y1, x2, y2 in the photo's pixels
    scores: torch.Tensor         # (K,) O-Net's face probability
    landmarks: torch.Tensor      # (K, 5, 2) x, y: left eye, right eye, nose, left and right mouth corners

    def records(self) -> list[dict]:
        boxes, scores, marks = self.boxes.cpu().tolist(), self.scores.cpu().tolist(), self.landmarks.cpu().tolist()
        return [{"box": [round(v, 2) for v in b], "score": round(s, 5),
                 "landmarks": [[round(x, 2), round(y, 2)] for x, y in m]} for b, s, m in zip(boxes, scores, marks)]


@dataclass
class StageTimes:
    """Seconds spent per stage (summed over calls): for `bench`."""
    seconds: dict[str, float] = field(default_factory=lambda: dict.fromkeys(("pnet", "rnet", "onet", "nms"), 0.0))


def pyramid_scales(height: int, width: int, min_face: int, factor: float) -> list[float]:
    """Scales at which a face of `min_face` px and up fills P-Net's 12x12 window, down to a 12 px short side."""
    scale = 12.0 / min_face
    side = min(height, width) * scale
    scales = []
    while side >= 12:
        scales.append(scale)
        scale *= factor
        side *= factor
    return scales


def square(boxes: torch.Tensor) -> torch.Tensor:
    """Each box grown to a square of its longer side around its centre."""
    w, h = boxes[:, 2] - boxes[:, 0], boxes[:, 3] - boxes[:, 1]
    side = torch.maximum(w, h)
    x1, y1 = boxes[:, 0] + w * 0.5 - side * 0.5, boxes[:, 1] + h * 0.5 - side * 0.5
    return torch.stack([x1, y1, x1 + side, y1 + side], 1)


def regress(boxes: torch.Tensor, offsets: torch.Tensor, inclusive: bool) -> torch.Tensor:
    """Box corners moved by offsets (fractions of the box's width and height)."""
    one = 1.0 if inclusive else 0.0
    w, h = boxes[:, 2] - boxes[:, 0] + one, boxes[:, 3] - boxes[:, 1] + one
    return boxes + offsets * torch.stack([w, h, w, h], 1)


def crop_regions(boxes: torch.Tensor, height: int, width: int) -> tuple[torch.Tensor, torch.Tensor]:
    """(regions (N, 4) [y0, y1, x0, x1) inside the photo, mask of boxes with a non-empty region)."""
    b = boxes.trunc().to(torch.int64)
    x0, y0 = b[:, 0].clamp(min=1) - 1, b[:, 1].clamp(min=1) - 1
    x1, y1 = b[:, 2].clamp(max=width), b[:, 3].clamp(max=height)
    ok = (x1 > x0) & (y1 > y0)
    return torch.stack([y0, y1, x0, x1], 1)[ok], ok


class Cascade:
    """`run[stage](batch) -> {"prob": (N, 2, ...), "reg": (N, 4, ...), "landmarks": (N, 10)}` for each stage;
    R-Net and O-Net are fed in chunks of at most `max_batch` crops."""

    def __init__(self, run: dict[str, Callable[[torch.Tensor], dict[str, torch.Tensor]]], device,
                 params: CascadeParams = CascadeParams(), max_batch: int = 256):
        self.run, self.device, self.params, self.max_batch = run, torch.device(device), params, max_batch
        self.times = StageTimes()
        self._inner = 0.0

    def _timed(self, stage: str, fn, *args):
        """fn(*args), its time added to `stage` less the time of the stages timed inside it (NMS in P-Net...)."""
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)
        outer, self._inner = self._inner, 0.0
        start = time.perf_counter()
        out = fn(*args)
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)
        elapsed = time.perf_counter() - start
        self.times.seconds[stage] += elapsed - self._inner
        self._inner = outer + elapsed
        return out

    def detect(self, image_rgb: np.ndarray) -> Faces:
        """Faces in one RGB uint8 (H, W, 3) photo."""
        sampler = AreaSampler(torch.from_numpy(np.ascontiguousarray(image_rgb)).to(self.device))
        boxes, scores = self._timed("pnet", self.proposals, sampler)
        boxes, scores = self._timed("rnet", self.refine, sampler, boxes)
        return self._timed("onet", self._output, sampler, boxes)

    def _nms(self, boxes, scores, threshold, overlap="union"):
        return self._timed("nms", nms_indices, boxes, scores, threshold, overlap)

    def proposals(self, sampler: AreaSampler):
        """Stage 1: P-Net over the pyramid -> squared candidate boxes (N, 4) and scores."""
        p, h, w = self.params, sampler.height, sampler.width
        found_boxes, found_scores, found_offsets = [], [], []
        for scale in pyramid_scales(h, w, p.min_face, p.factor):
            out = self.run["pnet"](sampler.level(int(h * scale + 1), int(w * scale + 1)))
            prob, reg = out["prob"][0, 1].float(), out["reg"][0].float()
            ys, xs = torch.nonzero(prob >= p.thresholds[0], as_tuple=True)
            cells = torch.stack([xs, ys], 1).to(torch.float32)
            corners = torch.cat([((STRIDE * cells + 1) / scale).floor(),
                                 ((STRIDE * cells + CELL) / scale).floor()], 1)
            scores, offsets = prob[ys, xs], reg[:, ys, xs].T
            keep = self._nms(corners, scores, p.nms_level)
            found_boxes.append(corners[keep])
            found_scores.append(scores[keep])
            found_offsets.append(offsets[keep])
        if not found_boxes:
            return torch.zeros((0, 4), device=self.device), torch.zeros(0, device=self.device)
        boxes, scores, offsets = torch.cat(found_boxes), torch.cat(found_scores), torch.cat(found_offsets)
        keep = self._nms(boxes, scores, p.nms_pyramid)
        return square(regress(boxes[keep], offsets[keep], inclusive=False)), scores[keep]

    def _classify(self, stage: str, sampler: AreaSampler, boxes: torch.Tensor):
        """Crops of `boxes` through R-Net or O-Net: (boxes kept, their network outputs)."""
        regions, ok = crop_regions(boxes, sampler.height, sampler.width)
        size = CROP_SIZE[stage]
        outputs: dict[str, list] = {}
        for start in range(0, len(regions), self.max_batch):
            batch = sampler.crops(regions[start:start + self.max_batch], size, size)
            for name, value in self.run[stage](batch).items():
                outputs.setdefault(name, []).append(value.float())
        return boxes[ok], {name: torch.cat(values) for name, values in outputs.items()}

    def refine(self, sampler: AreaSampler, boxes: torch.Tensor):
        """Stage 2: R-Net keeps and moves candidates."""
        if not len(boxes):
            return boxes, boxes[:, 0]
        boxes, out = self._classify("rnet", sampler, boxes)
        if not len(boxes):
            return boxes, boxes[:, 0]
        score = out["prob"][:, 1]
        passed = score > self.params.thresholds[1]
        boxes, score, offsets = boxes[passed], score[passed], out["reg"][passed]
        keep = self._nms(boxes, score, self.params.nms_rnet)
        return square(regress(boxes[keep], offsets[keep], inclusive=True)), score[keep]

    def _output(self, sampler: AreaSampler, boxes: torch.Tensor) -> Faces:
        """Stage 3: O-Net's final boxes, scores and landmarks."""
        none = Faces(boxes.new_zeros((0, 4)), boxes.new_zeros(0), boxes.new_zeros((0, 5, 2)))
        if not len(boxes):
            return none
        boxes, out = self._classify("onet", sampler, boxes)
        if not len(boxes):
            return none
        score = out["prob"][:, 1]
        passed = score > self.params.thresholds[2]
        boxes, score, offsets, marks = boxes[passed], score[passed], out["reg"][passed], out["landmarks"][passed]
        # landmarks are fractions of the (pre-regression) box, inclusive size, from its corner minus one pixel
        w, h = boxes[:, 2] - boxes[:, 0] + 1, boxes[:, 3] - boxes[:, 1] + 1
        xs = w[:, None] * marks[:, :5] + boxes[:, 0:1] - 1
        ys = h[:, None] * marks[:, 5:] + boxes[:, 1:2] - 1
        boxes = regress(boxes, offsets, inclusive=True)
        keep = self._nms(boxes, score, self.params.nms_onet, "min")
        return Faces(boxes[keep], score[keep], torch.stack([xs, ys], 2)[keep])
