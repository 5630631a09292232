"""The letterbox's geometry, upstream YOLOv5 v7.0's rules: where a resized image lies in the padded input.

The one definition shared by the CPU letterbox (zoo.vision.letterbox) and the GPU kernel (kernel.py), so the two
cannot disagree on where the image lies. Plain numpy: it sits with the kernel, below everything that uses either.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import numpy as np

PAD_VALUE = 114


def size_hw(size: int | Sequence[int]) -> tuple[int, int]:
    if isinstance(size, (int, np.integer)):
        return int(size), int(size)
    h, w = size
    return int(h), int(w)


@dataclass(frozen=True)
class LetterboxParams:
    """Geometry of one letterbox: source (src_w x src_h) -> resized (new_w x new_h) -> padded (out_w x out_h).

    ``dw``/``dh`` are upstream's half paddings (floats); ``pad_left``/``pad_top`` the integer offsets of the resized
    image inside the output (an odd total padding puts the extra pixel at the bottom/right).
    """

    src_w: int
    src_h: int
    scale: float
    new_w: int
    new_h: int
    dw: float
    dh: float
    pad_left: int
    pad_top: int
    pad_right: int
    pad_bottom: int

    @property
    def out_w(self) -> int:
        return self.pad_left + self.new_w + self.pad_right

    @property
    def out_h(self) -> int:
        return self.pad_top + self.new_h + self.pad_bottom

    @property
    def ratio_pad(self) -> tuple[tuple[float, float], tuple[float, float]]:
        """((ratio_w, ratio_h), (dw, dh)): upstream's ``ratio_pad`` argument of ``scale_boxes``."""
        return (self.scale, self.scale), (self.dw, self.dh)


def letterbox_params(src_hw: Sequence[int], new_shape: int | Sequence[int] = (640, 640), auto: bool = False,
                     scaleup: bool = True, stride: int = 32) -> LetterboxParams:
    """Compute the letterbox of an image of ``src_hw`` = (h, w) into ``new_shape`` = (h, w), upstream's rules."""
    h, w = int(src_hw[0]), int(src_hw[1])
    if h <= 0 or w <= 0:
        raise ValueError(f"image size must be positive, got {h}x{w} (h x w)")
    new_h, new_w = size_hw(new_shape)
    if new_h <= 0 or new_w <= 0:
        raise ValueError(f"letterbox size must be positive, got {new_h}x{new_w} (h x w)")
    r = min(new_h / h, new_w / w)
    if not scaleup:  # only scale down
        r = min(r, 1.0)
    # upstream: int(round(w * r)); at least 1 pixel, where upstream's cv2.resize would fail on a 0-pixel side
    unpad_w, unpad_h = max(int(round(w * r)), 1), max(int(round(h * r)), 1)
    dw, dh = new_w - unpad_w, new_h - unpad_h
    if auto:  # minimum rectangle
        dw, dh = dw % stride, dh % stride
    dw, dh = dw / 2, dh / 2
    top, bottom = int(round(dh - 0.1)), int(round(dh + 0.1))
    left, right = int(round(dw - 0.1)), int(round(dw + 0.1))
    return LetterboxParams(src_w=w, src_h=h, scale=r, new_w=unpad_w, new_h=unpad_h, dw=dw, dh=dh, pad_left=left,
                           pad_top=top, pad_right=right, pad_bottom=bottom)


def check_image(image: np.ndarray) -> None:
    if not isinstance(image, np.ndarray) or image.ndim != 3 or image.shape[2] != 3 or image.dtype != np.uint8:
        desc = f"{image.dtype} array of shape {image.shape}" if isinstance(image, np.ndarray) else type(image).__name__
        raise ValueError(f"expected a BGR uint8 image of shape (H, W, 3), got a {desc}")
