"""ImageNet-style classification pre-processing: resize the short side, centre crop, RGB, /255, mean/std, CHW.

The CPU version (`center_crop`, OpenCV) is the reference; `center_crop_torch` is the same steps in torch ops, which
run on a CUDA device (one upload of the uint8 image, resize, crop and normalise there), held equal to the reference
by a test to one grey level (OpenCV resizes uint8 images in fixed point). Families differ only in the numbers (crop 224 after a 256 short side for most torchvision models; 299 after 342 for Inception v3; TF-ported
EfficientNet-Lite normalises with mean 0.5 and std 0.5 and so on), which they pass as `CropSpec`.
"""
from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

import cv2
import numpy as np
import torch
import torch.nn.functional as F

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
CLASSES_FILE = Path(__file__).with_name("imagenet_classes.txt")
_TORCH_MODES = {cv2.INTER_LINEAR: "bilinear", cv2.INTER_CUBIC: "bicubic"}


@lru_cache(maxsize=1)
def imagenet_classes() -> tuple[str, ...]:
    """The 1000 ImageNet-1k class names in the standard synset order (index 0 tench ... 999 toilet tissue)."""
    names = tuple(CLASSES_FILE.read_text(encoding="utf-8").splitlines())
    if len(names) != 1000:
        raise ValueError(f"{CLASSES_FILE}: {len(names)} names, expected 1000")
    return names


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


def resized_size(h: int, w: int, spec: CropSpec) -> tuple[int, int]:
    """(height, width) after scaling the short side to spec.resize, never below the crop."""
    scale = spec.resize / min(h, w)
    return max(spec.crop, round(h * scale)), max(spec.crop, round(w * scale))


def center_crop(image_bgr: np.ndarray, spec: CropSpec) -> np.ndarray:
    """One HWC BGR uint8 image -> CHW float32 RGB, normalised."""
    size = spec.crop
    rh, rw = resized_size(*image_bgr.shape[:2], spec)
    resized = cv2.resize(image_bgr, (rw, rh), interpolation=spec.interpolation)
    top, left = (resized.shape[0] - size) // 2, (resized.shape[1] - size) // 2
    rgb = resized[top:top + size, left:left + size, ::-1].astype(np.float32) / 255.0
    mean, std = np.asarray(spec.mean, np.float32), np.asarray(spec.std, np.float32)
    return ((rgb - mean) / std).transpose(2, 0, 1).copy()


def center_crop_torch(image_bgr: torch.Tensor, spec: CropSpec) -> torch.Tensor:
    """`center_crop` in torch ops on the tensor's device: HWC BGR uint8 -> CHW float32 RGB, normalised.

    Resizing is half-pixel-centred bilinear or bicubic (a = -0.75) without antialiasing, as OpenCV's; the result is
    rounded and clamped to 0..255 as OpenCV's uint8 output is, then cropped, flipped to RGB and normalised."""
    if spec.interpolation not in _TORCH_MODES:
        raise ValueError(f"interpolation {spec.interpolation} has no torch equivalent here (linear or cubic)")
    size = spec.crop
    rh, rw = resized_size(image_bgr.shape[0], image_bgr.shape[1], spec)
    top, left = (rh - size) // 2, (rw - size) // 2
    x = image_bgr.permute(2, 0, 1)[None].float()
    x = F.interpolate(x, size=(rh, rw), mode=_TORCH_MODES[spec.interpolation], align_corners=False)
    x = x[0, :, top:top + size, left:left + size].round().clamp(0, 255).flip(0) / 255.0
    mean = torch.tensor(spec.mean, device=x.device).reshape(3, 1, 1)
    std = torch.tensor(spec.std, device=x.device).reshape(3, 1, 1)
    return (x - mean) / std
