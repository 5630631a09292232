"""Pre-processing of the YOLO classification models, one definition per family, CPU and torch.

- ultralytics YOLOv8/YOLO11 -cls: resize the short side to the input size, centre crop, RGB, /255, no mean/std:
  `zoo.vision.imagenet.center_crop` with `ultralytics_spec(size)`.
- YOLOv5 v7.0 -cls (`classify_transforms`): the centred square of side min(h, w) cut out of the original, resized
  to the input size with INTER_LINEAR, RGB, /255, then ImageNet mean/std: `yolov5_classify_input`.

Upstream resizes uint8 images with OpenCV, so the CPU versions here do too (they are the reference). The torch
versions (`*_torch`, any device, CUDA when there) resample in float32 with the same bilinear sampling
(half-pixel centres, no antialiasing) and round to uint8 as OpenCV's output is, then normalise; OpenCV's uint8
bilinear uses 11-bit fixed-point weights, so the two agree to one grey level (tests/test_tasks_postprocess.py).
"""
from __future__ import annotations

from typing import Sequence

import cv2
import numpy as np
import torch

from .imagenet import IMAGENET_MEAN, IMAGENET_STD, CropSpec, center_crop

NO_NORMALIZATION = ((0.0, 0.0, 0.0), (1.0, 1.0, 1.0))


def ultralytics_spec(size: int) -> CropSpec:
    """ultralytics' classify transforms: short side to `size`, centre crop `size`, /255 only."""
    mean, std = NO_NORMALIZATION
    return CropSpec(crop=size, resize=size, mean=mean, std=std, interpolation=cv2.INTER_LINEAR)


def ultralytics_classify_input(image_bgr: np.ndarray, size: int) -> np.ndarray:
    return center_crop(image_bgr, ultralytics_spec(size))


def _square(h: int, w: int) -> tuple[int, int, int]:
    """(top, left, side) of the centred square of side min(h, w) (upstream's CenterCrop)."""
    side = min(h, w)
    return (h - side) // 2, (w - side) // 2, side


def yolov5_classify_input(image_bgr: np.ndarray, size: int) -> np.ndarray:
    """One HWC BGR uint8 image -> (3, size, size) float32: centred square, INTER_LINEAR resize, RGB, /255,
    ImageNet mean/std."""
    top, left, side = _square(*image_bgr.shape[:2])
    square = image_bgr[top:top + side, left:left + side]
    resized = cv2.resize(square, (size, size), interpolation=cv2.INTER_LINEAR)
    rgb = resized[:, :, ::-1].astype(np.float32) / 255.0
    mean, std = np.asarray(IMAGENET_MEAN, np.float32), np.asarray(IMAGENET_STD, np.float32)
    return ((rgb - mean) / std).transpose(2, 0, 1).copy()


# ---------------------------------------------------------------------------------------------------- torch


def _resize_uint8(image: torch.Tensor, height: int, width: int) -> torch.Tensor:
    """(3, h, w) uint8 -> (3, height, width) float32 holding whole grey levels, bilinear as cv2.INTER_LINEAR."""
    x = image.float()[None]
    if (x.shape[2], x.shape[3]) != (height, width):
        x = torch.nn.functional.interpolate(x, size=(height, width), mode="bilinear", align_corners=False)
    return x[0].round().clamp(0, 255)


def _normalize(rgb255: torch.Tensor, mean: Sequence[float], std: Sequence[float]) -> torch.Tensor:
    m = torch.tensor(mean, dtype=torch.float32, device=rgb255.device).view(3, 1, 1)
    s = torch.tensor(std, dtype=torch.float32, device=rgb255.device).view(3, 1, 1)
    return (rgb255 / 255.0 - m) / s


def _to_chw_rgb(image_bgr: np.ndarray, device) -> torch.Tensor:
    return torch.from_numpy(np.ascontiguousarray(image_bgr[:, :, ::-1].transpose(2, 0, 1))).to(device)


def center_crop_torch(images_bgr: Sequence[np.ndarray], spec: CropSpec, device="cpu") -> torch.Tensor:
    """`center_crop` for a batch of images of any sizes, on `device`: (B, 3, crop, crop) float32."""
    out = []
    for image in images_bgr:
        h, w = image.shape[:2]
        scale = spec.resize / min(h, w)
        rw, rh = max(spec.crop, round(w * scale)), max(spec.crop, round(h * scale))
        resized = _resize_uint8(_to_chw_rgb(image, device), rh, rw)
        top, left = (rh - spec.crop) // 2, (rw - spec.crop) // 2
        out.append(_normalize(resized[:, top:top + spec.crop, left:left + spec.crop], spec.mean, spec.std))
    return torch.stack(out)


def yolov5_classify_torch(images_bgr: Sequence[np.ndarray], size: int, device="cpu") -> torch.Tensor:
    """`yolov5_classify_input` for a batch, on `device`: (B, 3, size, size) float32."""
    out = []
    for image in images_bgr:
        top, left, side = _square(*image.shape[:2])
        square = _to_chw_rgb(image[top:top + side, left:left + side], device)
        out.append(_normalize(_resize_uint8(square, size, size), IMAGENET_MEAN, IMAGENET_STD))
    return torch.stack(out)
