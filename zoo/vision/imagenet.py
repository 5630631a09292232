"""ImageNet-style classification pre-processing: resize the short side, centre crop, RGB, /255, mean/std, CHW.

The CPU version here is the reference; any GPU version is held equal to it by a test. Families differ only in the
numbers (crop 224 after a 256 short side for most torchvision models; 299 after 342 for Inception v3; TF-ported
EfficientNet-Lite normalises with mean 0.5 and std 0.5 and so on), which they pass as `CropSpec`.
"""
from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


@dataclass(frozen=True)
class CropSpec:
    crop: int = 224                               # output height and width
    resize: int = 256                             # the short side before cropping
    mean: tuple[float, float, float] = IMAGENET_MEAN
    std: tuple[float, float, float] = IMAGENET_STD
    interpolation: int = cv2.INTER_LINEAR

    @staticmethod
    def scaled(crop: int, ratio: float = 256 / 224, **kwargs) -> "CropSpec":
        """A crop of `crop` pixels after resizing the short side to crop * ratio (torchvision's habit)."""
        return CropSpec(crop=crop, resize=round(crop * ratio), **kwargs)


def center_crop(image_bgr: np.ndarray, spec: CropSpec) -> np.ndarray:
    """One HWC BGR uint8 image -> CHW float32 RGB, normalised."""
    size = spec.crop
    h, w = image_bgr.shape[:2]
    scale = spec.resize / min(h, w)
    resized = cv2.resize(image_bgr, (max(size, round(w * scale)), max(size, round(h * scale))),
                         interpolation=spec.interpolation)
    top, left = (resized.shape[0] - size) // 2, (resized.shape[1] - size) // 2
    rgb = resized[top:top + size, left:left + size, ::-1].astype(np.float32) / 255.0
    mean, std = np.asarray(spec.mean, np.float32), np.asarray(spec.std, np.float32)
    return ((rgb - mean) / std).transpose(2, 0, 1).copy()
