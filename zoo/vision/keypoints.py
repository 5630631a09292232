"""Keypoints of pose models: from network-input pixels back to the original image (drawn by zoo.vision.draw).

`unletterbox_points` is the exact inverse of the letterbox's geometry for continuous coordinates: the image was
resized from src_w x src_h to new_w x new_h (cv2 maps pixel edges to pixel edges) and placed at (pad_left,
pad_top), so x_orig = (x - pad_left) * src_w / new_w. Keypoints and rotated-box centres go through it.
"""
from __future__ import annotations

from typing import Sequence

import numpy as np

from .letterbox import LetterboxParams

# COCO person keypoints: names, and the limbs drawn between them (0-based indices).
COCO_KEYPOINTS = ("nose", "left_eye", "right_eye", "left_ear", "right_ear", "left_shoulder", "right_shoulder",
                  "left_elbow", "right_elbow", "left_wrist", "right_wrist", "left_hip", "right_hip", "left_knee",
                  "right_knee", "left_ankle", "right_ankle")
COCO_SKELETON = ((15, 13), (13, 11), (16, 14), (14, 12), (11, 12), (5, 11), (6, 12), (5, 6), (5, 7), (6, 8),
                 (7, 9), (8, 10), (1, 2), (0, 1), (0, 2), (1, 3), (2, 4), (3, 5), (4, 6))
VISIBLE = 0.5  # a keypoint with a visibility score below this is not drawn


def unletterbox_points(xy: np.ndarray, letterbox: LetterboxParams, clip: bool = True) -> np.ndarray:
    """(..., 2) x, y in network-input pixels -> original-image pixels (a new float32 array), clipped to the
    image when `clip`."""
    lb = letterbox
    out = np.array(xy, dtype=np.float32, copy=True)
    out[..., 0] = (out[..., 0] - lb.pad_left) * (lb.src_w / lb.new_w)
    out[..., 1] = (out[..., 1] - lb.pad_top) * (lb.src_h / lb.new_h)
    if clip:
        out[..., 0] = out[..., 0].clip(0, lb.src_w)
        out[..., 1] = out[..., 1].clip(0, lb.src_h)
    return out


def scale_keypoints(keypoints: np.ndarray, letterbox: LetterboxParams) -> np.ndarray:
    """(n, K, D) keypoints (D = 2: x, y; D = 3: x, y, visibility) in input pixels -> original pixels; the
    visibility column is kept as it is."""
    out = np.array(keypoints, dtype=np.float32, copy=True)
    if out.size:
        out[..., :2] = unletterbox_points(out[..., :2], letterbox)
    return out


def keypoint_records(keypoints: np.ndarray, digits: int = 2) -> list[list[list[float]]]:
    """JSON form: per detection a list of [x, y] or [x, y, visibility]."""
    return [[[round(float(v), digits) for v in point] for point in person] for person in np.asarray(keypoints)]


def skeleton_for(num_keypoints: int) -> Sequence[tuple[int, int]]:
    """The limbs drawn for a keypoint count: the COCO skeleton for 17, none otherwise."""
    return COCO_SKELETON if num_keypoints == len(COCO_KEYPOINTS) else ()
