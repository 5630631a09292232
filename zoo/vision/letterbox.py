"""Letterbox pre-processing, exactly as upstream YOLOv5 v7.0 (``utils/augmentations.letterbox``), and its inverse.

``preprocess`` / ``to_input_tensor`` is THE CPU pre-processing of the zoo: inference, calibration, validation and
tests all call it. ``letterbox_params`` is the single place where the geometry (scale, padding, rounding) is computed;
the CPU path uses it and a GPU kernel can consume the same ``LetterboxParams``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import cv2
import numpy as np

PAD_VALUE = 114


def _hw(size: int | Sequence[int]) -> tuple[int, int]:
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
    new_h, new_w = _hw(new_shape)
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


def apply_letterbox(image_bgr: np.ndarray, params: LetterboxParams, color: int | Sequence[int] = PAD_VALUE
                    ) -> np.ndarray:
    """Resize (cv2.INTER_LINEAR, only when the size changes) and pad with ``color`` as ``params`` says."""
    im = image_bgr
    if (params.src_w, params.src_h) != (params.new_w, params.new_h):
        im = cv2.resize(im, (params.new_w, params.new_h), interpolation=cv2.INTER_LINEAR)
    value = (color,) * 3 if isinstance(color, (int, np.integer)) else tuple(color)
    return cv2.copyMakeBorder(im, params.pad_top, params.pad_bottom, params.pad_left, params.pad_right,
                              cv2.BORDER_CONSTANT, value=value)


def letterbox(image_bgr: np.ndarray, new_shape: int | Sequence[int] = (640, 640),
              color: int | Sequence[int] = PAD_VALUE, auto: bool = False, scaleup: bool = True, stride: int = 32
              ) -> tuple[np.ndarray, tuple[float, float], tuple[float, float]]:
    """Upstream ``letterbox``: returns (padded image, (ratio_w, ratio_h), (dw, dh)); new_shape is (h, w)."""
    params = letterbox_params(image_bgr.shape[:2], new_shape, auto, scaleup, stride)
    return apply_letterbox(image_bgr, params, color), (params.scale, params.scale), (params.dw, params.dh)


def preprocess(images_bgr: np.ndarray | Sequence[np.ndarray], size: int | Sequence[int] = 640
               ) -> tuple[np.ndarray, list[LetterboxParams]]:
    """Letterbox (pad 114, no auto) + BGR->RGB + HWC->CHW + /255 for a batch: (B, 3, H, W) float32 and params.

    ``images_bgr``: one (H, W, 3) uint8 BGR image, a (B, H, W, 3) array, or a sequence of images of any sizes.
    ``size``: the network input, an int or (h, w).
    """
    if isinstance(images_bgr, np.ndarray) and images_bgr.ndim == 3:
        images_bgr = [images_bgr]
    out_h, out_w = _hw(size)
    batch = np.empty((len(images_bgr), 3, out_h, out_w), dtype=np.float32)
    params = []
    for b, image in enumerate(images_bgr):
        check_image(image)
        p = letterbox_params(image.shape[:2], (out_h, out_w))
        padded = apply_letterbox(image, p)
        # HWC BGR -> CHW RGB, then float32 / 255 (a correctly rounded division, as torch's `im /= 255`)
        np.divide(padded.transpose(2, 0, 1)[::-1], np.float32(255.0), out=batch[b], dtype=np.float32)
        params.append(p)
    return batch, params


def to_input_tensor(images_bgr: np.ndarray | Sequence[np.ndarray], size: int | Sequence[int] = 640) -> np.ndarray:
    """The network input (B, 3, H, W) float32 of ``preprocess``, without the letterbox parameters."""
    return preprocess(images_bgr, size)[0]


def clip_boxes(boxes, hw: Sequence[int]):
    """Clip xyxy boxes (numpy array or torch tensor, (..., >=4)) to an image of (h, w), in place; returns boxes."""
    h, w = hw[0], hw[1]
    if isinstance(boxes, np.ndarray):
        boxes[..., [0, 2]] = boxes[..., [0, 2]].clip(0, w)
        boxes[..., [1, 3]] = boxes[..., [1, 3]].clip(0, h)
    else:  # torch.Tensor
        boxes[..., 0].clamp_(0, w)
        boxes[..., 1].clamp_(0, h)
        boxes[..., 2].clamp_(0, w)
        boxes[..., 3].clamp_(0, h)
    return boxes


def scale_boxes(boxes_xyxy, input_hw: Sequence[int], original_hw: Sequence[int],
                ratio_pad: tuple[tuple[float, float], tuple[float, float]] | LetterboxParams | None = None):
    """Map xyxy boxes from the letterboxed input (h, w) back to the original image (h, w), then clip.

    Upstream ``scale_boxes``: without ``ratio_pad`` the gain and padding are re-derived from the two sizes (exact for
    the default letterbox with scaleup=True); pass the ``LetterboxParams`` (or upstream's ratio_pad) otherwise.
    Returns a new array/tensor (float); only the first 4 columns change.
    """
    if isinstance(ratio_pad, LetterboxParams):
        ratio_pad = ratio_pad.ratio_pad
    if ratio_pad is None:
        gain = min(input_hw[0] / original_hw[0], input_hw[1] / original_hw[1])
        pad = (input_hw[1] - original_hw[1] * gain) / 2, (input_hw[0] - original_hw[0] * gain) / 2
    else:
        gain = ratio_pad[0][0]
        pad = ratio_pad[1]
    if isinstance(boxes_xyxy, np.ndarray):
        out = boxes_xyxy.astype(np.float32 if boxes_xyxy.dtype != np.float64 else np.float64, copy=True)
    else:
        out = boxes_xyxy.clone().float() if not boxes_xyxy.is_floating_point() else boxes_xyxy.clone()
    out[..., [0, 2]] -= pad[0]
    out[..., [1, 3]] -= pad[1]
    out[..., :4] /= gain
    return clip_boxes(out, original_hw)
