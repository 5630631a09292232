"""Letterbox pre-processing, exactly as upstream YOLOv5 v7.0 (``utils/augmentations.letterbox``), and its inverse.

``preprocess`` / ``to_input_tensor`` is THE CPU pre-processing of the zoo: inference, calibration, validation and
tests all call it. ``letterbox_params`` (plugins/letterbox/geometry.py, below the GPU kernel that shares it) is the
single place where the geometry (scale, padding, rounding) is computed; the CPU path here and the kernel both use it.
"""

from __future__ import annotations

from typing import Sequence

import cv2
import numpy as np

from plugins.letterbox.geometry import PAD_VALUE, LetterboxParams, check_image, size_hw, letterbox_params  # noqa: F401

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
    out_h, out_w = size_hw(size)
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


def unletterbox_map(values: np.ndarray, params: LetterboxParams, nearest: bool) -> np.ndarray:
    """A per-pixel map of the network input (H, W) back to the original image (src_h, src_w): the padding cropped,
    then resized (nearest for class ids, bilinear for continuous values such as depth)."""
    inner = values[params.pad_top:params.pad_top + params.new_h, params.pad_left:params.pad_left + params.new_w]
    if (params.new_w, params.new_h) == (params.src_w, params.src_h):
        return np.ascontiguousarray(inner)
    return cv2.resize(np.ascontiguousarray(inner), (params.src_w, params.src_h),
                      interpolation=cv2.INTER_NEAREST if nearest else cv2.INTER_LINEAR)
