"""Oriented boxes (xywhr: centre, size, angle in radians): ultralytics' probabilistic IoU, rotated NMS, corners,
the letterbox undone (drawn by zoo.vision.draw).

probiou (Llerena et al., "Gaussian bounding boxes and probabilistic IoU", as ultralytics' `batch_probiou`): each
box is a Gaussian with covariance R diag(w^2/12, h^2/12) R^T; with (a, b, c) = (var_x, var_y, cov_xy) summed over
the two boxes and dx, dy the centre offsets,
    t1 = (a dy^2 + b dx^2) / (a b - c^2 + eps) / 4,   t2 = c (x2 - x1)(y1 - y2) / (a b - c^2 + eps) / 2,
    t3 = log((a b - c^2) / (4 sqrt(det1 det2) + eps) + eps) / 2,
    bd = clamp(t1 + t2 + t3, eps, 100),   iou = 1 - sqrt(1 - exp(-bd) + eps),   eps = 1e-7
(det_i clamped at 0).

Rotated NMS has ultralytics' semantics (fast NMS): boxes sorted by score (stable: ties keep input order), and a box
is dropped when ANY higher-scored box, kept or not, overlaps it with probiou >= the threshold. Classes are
separated by offsetting the centres by class * 7680 (unless agnostic).

Two implementations, held equal by tests/test_tasks_postprocess.py: torch (any device) and numpy (float64).
"""
from __future__ import annotations

import math
from typing import Sequence

import numpy as np
import torch

from .keypoints import unletterbox_points
from .letterbox import LetterboxParams

EPS = 1e-7
MAX_WH = 7680
MAX_NMS = 30000


# ---------------------------------------------------------------------------------------------------- probiou


def _covariance(boxes, lib):
    a, b = boxes[..., 2] ** 2 / 12, boxes[..., 3] ** 2 / 12
    cos, sin = lib.cos(boxes[..., 4]), lib.sin(boxes[..., 4])
    return a * cos ** 2 + b * sin ** 2, a * sin ** 2 + b * cos ** 2, (a - b) * cos * sin


def probiou(boxes1: torch.Tensor, boxes2: torch.Tensor) -> torch.Tensor:
    """(N, 5) x (M, 5) xywhr -> (N, M) probabilistic IoU, torch ops."""
    a1, b1, c1 = (v[:, None] for v in _covariance(boxes1, torch))
    a2, b2, c2 = (v[None, :] for v in _covariance(boxes2, torch))
    x1, y1 = boxes1[:, None, 0], boxes1[:, None, 1]
    x2, y2 = boxes2[None, :, 0], boxes2[None, :, 1]
    a, b, c = a1 + a2, b1 + b2, c1 + c2
    det = a * b - c ** 2
    t1 = (a * (y1 - y2) ** 2 + b * (x1 - x2) ** 2) / (det + EPS) * 0.25
    t2 = (c * (x2 - x1) * (y1 - y2)) / (det + EPS) * 0.5
    t3 = torch.log(det / (4 * torch.sqrt((a1 * b1 - c1 ** 2).clamp(min=0) * (a2 * b2 - c2 ** 2).clamp(min=0))
                          + EPS) + EPS) * 0.5
    bd = (t1 + t2 + t3).clamp(EPS, 100.0)
    return 1 - torch.sqrt(1 - torch.exp(-bd) + EPS)


def probiou_reference(boxes1: np.ndarray, boxes2: np.ndarray) -> np.ndarray:
    """numpy float64 probiou, one pair at a time (a plain loop over the formula)."""
    b1, b2 = np.asarray(boxes1, np.float64), np.asarray(boxes2, np.float64)
    out = np.zeros((len(b1), len(b2)))
    for i, p in enumerate(b1):
        ap, bp, cp = _covariance(p, np)
        for j, q in enumerate(b2):
            aq, bq, cq = _covariance(q, np)
            a, b, c = ap + aq, bp + bq, cp + cq
            det = a * b - c * c
            t1 = (a * (p[1] - q[1]) ** 2 + b * (p[0] - q[0]) ** 2) / (det + EPS) / 4
            t2 = c * (q[0] - p[0]) * (p[1] - q[1]) / (det + EPS) / 2
            t3 = math.log(det / (4 * math.sqrt(max(ap * bp - cp * cp, 0) * max(aq * bq - cq * cq, 0)) + EPS)
                          + EPS) / 2
            bd = min(max(t1 + t2 + t3, EPS), 100.0)
            out[i, j] = 1 - math.sqrt(1 - math.exp(-bd) + EPS)
    return out


# ---------------------------------------------------------------------------------------------------- NMS


def rotated_nms(boxes: torch.Tensor, scores: torch.Tensor, iou_thres: float) -> torch.Tensor:
    """Indices (into the input) of the boxes kept, highest score first. torch ops, on the boxes' device."""
    if not len(boxes):
        return torch.zeros(0, dtype=torch.long, device=boxes.device)
    order = torch.sort(scores, descending=True, stable=True).indices
    iou = probiou(boxes[order], boxes[order]).triu(diagonal=1)
    return order[iou.max(0).values < iou_thres]


def rotated_nms_reference(boxes: np.ndarray, scores: np.ndarray, iou_thres: float) -> np.ndarray:
    """numpy loop of the same rule: box j is kept unless a box ranked before it has probiou >= iou_thres."""
    order = np.argsort(-np.asarray(scores, np.float64), kind="stable")
    iou = probiou_reference(np.asarray(boxes)[order], np.asarray(boxes)[order])
    keep = [j for j in range(len(order)) if not any(iou[i, j] >= iou_thres for i in range(j))]
    return order[keep]


def obb_nms(prediction: torch.Tensor, conf_thres: float = 0.25, iou_thres: float = 0.7,
            classes: Sequence[int] | None = None, agnostic: bool = False, max_det: int = 300,
            max_nms: int = MAX_NMS) -> list[torch.Tensor]:
    """Ultralytics OBB output (B, 4 + nc + 1, A) [cx, cy, w, h, class scores..., angle] -> per image (K, 7)
    [cx, cy, w, h, angle, score, class] in input pixels, best first."""
    x = prediction.float().transpose(1, 2)  # (B, A, 4 + nc + 1)
    out = []
    for image in x:
        scores, cls = image[:, 4:-1].max(1)
        keep = scores > conf_thres
        if classes is not None:
            keep &= torch.isin(cls, torch.tensor(list(classes), device=cls.device))
        image, scores, cls = image[keep], scores[keep], cls[keep]
        top = torch.sort(scores, descending=True, stable=True).indices[:max_nms]
        image, scores, cls = image[top], scores[top], cls[top].float()
        boxes = torch.cat((image[:, :4], image[:, -1:]), 1)
        shifted = boxes.clone()
        shifted[:, :2] += cls[:, None] * (0 if agnostic else MAX_WH)
        kept = rotated_nms(shifted, scores, iou_thres)[:max_det]
        out.append(torch.cat((boxes[kept], scores[kept, None], cls[kept, None]), 1))
    return out


# ---------------------------------------------------------------------------------------------------- geometry


def regularize(xywhr: np.ndarray) -> np.ndarray:
    """The same rectangle with w >= h and the angle in [0, pi) (ultralytics' regularize_rboxes)."""
    out = np.array(xywhr, dtype=np.float32, copy=True)
    swap = out[..., 2] < out[..., 3]
    out[..., 2], out[..., 3] = np.where(swap, out[..., 3], out[..., 2]), np.where(swap, out[..., 2], out[..., 3])
    out[..., 4] = np.mod(out[..., 4] + np.where(swap, np.pi / 2, 0), np.pi)
    return out


def corners(xywhr: np.ndarray) -> np.ndarray:
    """(n, 5) -> (n, 4, 2): the four corners, centre +- half width along the angle +- half height across it."""
    b = np.asarray(xywhr, np.float32).reshape(-1, 5)
    cos, sin = np.cos(b[:, 4]), np.sin(b[:, 4])
    along = np.stack((b[:, 2] / 2 * cos, b[:, 2] / 2 * sin), 1)
    across = np.stack((-b[:, 3] / 2 * sin, b[:, 3] / 2 * cos), 1)
    c = b[:, :2]
    return np.stack((c + along + across, c + along - across, c - along - across, c - along + across), 1)


def scale_rotated(xywhr: np.ndarray, letterbox: LetterboxParams) -> np.ndarray:
    """Rotated boxes from input pixels to original pixels: the centre through the letterbox's inverse, the
    sides divided by the scale; the angle is unchanged (the letterbox scales x and y alike, up to rounding of the
    resized size, which is below half a pixel)."""
    out = np.array(xywhr, dtype=np.float32, copy=True).reshape(-1, 5)
    out[:, :2] = unletterbox_points(out[:, :2], letterbox, clip=False)
    out[:, 2] *= letterbox.src_w / letterbox.new_w
    out[:, 3] *= letterbox.src_h / letterbox.new_h
    return out
