"""Instance masks of YOLO segmentation models, from prototypes to the original image, and their output forms.

Per detection (after NMS), in this order (upstream's `process_mask`, then the letterbox undone):
1. probabilities = sigmoid(coefficients @ protos.view(nm, -1)) at proto resolution (1/4 of the input);
2. crop to the box scaled to proto resolution: keep column c, row r when x1 <= c < x2 and y1 <= r < y2;
3. bilinear upsample (align_corners=False) to the network input;
4. the letterbox undone: the padding rows and columns removed first, then a bilinear resize to the original size;
5. threshold: > 0.5.
The threshold is applied once, after the resamplings, so a mask edge lands where the interpolated probability
crosses 0.5 in original pixels (thresholding at input size and resizing a 0/1 mask would move edges by up to a
pixel of the input).

Two implementations, held equal by tests/test_tasks_postprocess.py: `assemble_masks` (torch ops; runs on the
tensors' device, CUDA when there) and `assemble_masks_reference` (numpy, its own bilinear resampling). Masks are
made `chunk` detections at a time (`iter_masks`), so memory is bounded by chunk x original image size.

Output forms: COCO run-length encoding (`encode_rle`, the compressed string of the COCO API, column-major) and
polygons in original pixels (`mask_polygons`); zoo.vision.draw draws them.
"""
from __future__ import annotations

from typing import Iterator, Sequence

import cv2
import numpy as np
import torch

from .letterbox import LetterboxParams

THRESHOLD = 0.5


# ---------------------------------------------------------------------------------------------------- torch path


def _crop_to_boxes(masks: torch.Tensor, boxes: torch.Tensor) -> torch.Tensor:
    """Zero everything outside each box: masks (n, h, w), boxes (n, 4) xyxy in the masks' pixel units."""
    _, h, w = masks.shape
    cols = torch.arange(w, device=masks.device, dtype=boxes.dtype)[None, None, :]
    rows = torch.arange(h, device=masks.device, dtype=boxes.dtype)[None, :, None]
    x1, y1, x2, y2 = (boxes[:, i, None, None] for i in range(4))
    return masks * ((cols >= x1) & (cols < x2) & (rows >= y1) & (rows < y2))


def _chunk_probabilities(protos: torch.Tensor, coefficients: torch.Tensor, boxes: torch.Tensor,
                         input_hw: Sequence[int], letterbox: LetterboxParams) -> torch.Tensor:
    """Steps 1-4 for a few detections: (n, H0, W0) float32 probabilities in original pixels."""
    nm, ph, pw = protos.shape
    n = len(coefficients)
    masks = (coefficients.float() @ protos.float().reshape(nm, -1)).sigmoid().reshape(n, ph, pw)
    gain = torch.tensor([pw / input_hw[1], ph / input_hw[0], pw / input_hw[1], ph / input_hw[0]],
                        dtype=torch.float32, device=boxes.device)
    masks = _crop_to_boxes(masks, boxes.float() * gain)
    masks = torch.nn.functional.interpolate(masks[None], size=tuple(input_hw), mode="bilinear",
                                            align_corners=False)[0]
    lb = letterbox
    masks = masks[:, lb.pad_top:lb.pad_top + lb.new_h, lb.pad_left:lb.pad_left + lb.new_w]
    return torch.nn.functional.interpolate(masks[None], size=(lb.src_h, lb.src_w), mode="bilinear",
                                           align_corners=False)[0]


def iter_masks(protos: torch.Tensor, coefficients: torch.Tensor, boxes: torch.Tensor, input_hw: Sequence[int],
               letterbox: LetterboxParams, chunk: int = 16) -> Iterator[torch.Tensor]:
    """Boolean masks in original pixels, `chunk` detections at a time ((k, H0, W0) each, on protos' device).

    protos (nm, h, w) of one image; coefficients (n, nm); boxes (n, 4) xyxy in network-input pixels (before the
    letterbox is undone), as NMS returns them."""
    if protos.ndim != 3 or coefficients.ndim != 2 or coefficients.shape[1] != protos.shape[0]:
        raise ValueError(f"masks: protos must be (nm, h, w) and coefficients (n, nm), got {tuple(protos.shape)} "
                         f"and {tuple(coefficients.shape)}")
    for start in range(0, len(coefficients), chunk):
        stop = start + chunk
        yield _chunk_probabilities(protos, coefficients[start:stop], boxes[start:stop], input_hw,
                                   letterbox) > THRESHOLD


def assemble_masks(protos: torch.Tensor, coefficients: torch.Tensor, boxes: torch.Tensor, input_hw: Sequence[int],
                   letterbox: LetterboxParams) -> torch.Tensor:
    """All masks of one image at once: (n, H0, W0) bool (see `iter_masks`)."""
    parts = list(iter_masks(protos, coefficients, boxes, input_hw, letterbox))
    if not parts:
        return torch.zeros((0, letterbox.src_h, letterbox.src_w), dtype=torch.bool, device=protos.device)
    return torch.cat(parts)


def mask_probabilities(protos, coefficients, boxes, input_hw, letterbox) -> torch.Tensor:
    """Steps 1-4 without the threshold (for tests and soft-mask consumers): (n, H0, W0) float32."""
    return _chunk_probabilities(protos, coefficients, boxes, input_hw, letterbox)


# ---------------------------------------------------------------------------------------------------- numpy path


def _resize_bilinear_np(images: np.ndarray, out_h: int, out_w: int) -> np.ndarray:
    """(n, h, w) -> (n, out_h, out_w): half-pixel centres, source index clamped at 0 and h-1, no antialiasing
    (the definition of bilinear resampling with align_corners=False), one axis after the other."""

    def taps(size_in: int, size_out: int):
        src = np.maximum((np.arange(size_out, dtype=np.float64) + 0.5) * (size_in / size_out) - 0.5, 0.0)
        lo = np.minimum(np.floor(src).astype(np.int64), size_in - 1)
        hi = np.minimum(lo + 1, size_in - 1)
        frac = (src - lo).astype(np.float32)
        return lo, hi, frac

    lo, hi, f = taps(images.shape[1], out_h)
    rows = images[:, lo, :] * (1 - f)[None, :, None] + images[:, hi, :] * f[None, :, None]
    lo, hi, f = taps(images.shape[2], out_w)
    return rows[:, :, lo] * (1 - f)[None, None, :] + rows[:, :, hi] * f[None, None, :]


def mask_probabilities_reference(protos: np.ndarray, coefficients: np.ndarray, boxes: np.ndarray,
                                 input_hw: Sequence[int], letterbox: LetterboxParams) -> np.ndarray:
    """numpy steps 1-4, written from the definitions, one detection at a time: (n, H0, W0) float32."""
    protos = np.asarray(protos, np.float32)
    nm, ph, pw = protos.shape
    lb = letterbox
    out = np.zeros((len(coefficients), lb.src_h, lb.src_w), np.float32)
    sx, sy = pw / input_hw[1], ph / input_hw[0]
    for i, (c, box) in enumerate(zip(np.asarray(coefficients, np.float32), np.asarray(boxes, np.float32))):
        logits = np.tensordot(c, protos, axes=1)
        mask = 1.0 / (1.0 + np.exp(-logits))
        x1, y1, x2, y2 = box[0] * sx, box[1] * sy, box[2] * sx, box[3] * sy
        inside_cols = (np.arange(pw) >= x1) & (np.arange(pw) < x2)
        inside_rows = (np.arange(ph) >= y1) & (np.arange(ph) < y2)
        mask = mask * (inside_rows[:, None] & inside_cols[None, :])
        full = _resize_bilinear_np(mask[None], int(input_hw[0]), int(input_hw[1]))[0]
        image = full[lb.pad_top:lb.pad_top + lb.new_h, lb.pad_left:lb.pad_left + lb.new_w]
        out[i] = _resize_bilinear_np(image[None], lb.src_h, lb.src_w)[0]
    return out


def assemble_masks_reference(protos, coefficients, boxes, input_hw, letterbox) -> np.ndarray:
    """(n, H0, W0) bool, the numpy reference of `assemble_masks`."""
    return mask_probabilities_reference(protos, coefficients, boxes, input_hw, letterbox) > THRESHOLD


# ---------------------------------------------------------------------------------------------------- output forms


def encode_rle(mask: np.ndarray) -> dict:
    """COCO RLE of a 2-D boolean mask: {"size": [h, w], "counts": str}, the COCO API's compressed form.

    Runs are counted over the column-major (Fortran) order, starting with a run of zeros (0 when the first
    pixel is set). Each count, minus the count two before it from the fourth on, is written in 5-bit groups,
    least significant first, as chr(48 + group), with 0x20 marking that more groups follow and the sign taken
    from bit 0x10 of the last group."""
    counts = rle_counts(mask)
    chars = []
    for i, count in enumerate(counts):
        x = count - counts[i - 2] if i > 2 else count
        more = True
        while more:
            c = x & 0x1F
            x >>= 5  # arithmetic shift: a negative x ends at -1
            more = x != -1 if c & 0x10 else x != 0
            if more:
                c |= 0x20
            chars.append(chr(c + 48))
    return {"size": [int(mask.shape[0]), int(mask.shape[1])], "counts": "".join(chars)}


def rle_counts(mask: np.ndarray) -> list[int]:
    """Uncompressed COCO counts: lengths of alternating runs (zeros first) over the column-major pixels."""
    flat = np.asarray(mask, dtype=bool).reshape(-1, order="F")
    changes = np.flatnonzero(flat[1:] != flat[:-1]) + 1
    bounds = np.concatenate(([0], changes, [flat.size]))
    runs = np.diff(bounds).tolist()
    return ([0] + runs) if flat.size and flat[0] else runs


def decode_rle(rle: dict) -> np.ndarray:
    """The boolean mask of a compressed COCO RLE (the inverse of `encode_rle`)."""
    h, w = rle["size"]
    counts: list[int] = []
    data, p = rle["counts"].encode("ascii"), 0
    while p < len(data):
        x, k, more = 0, 0, True
        while more:
            c = data[p] - 48
            x |= (c & 0x1F) << (5 * k)
            more = bool(c & 0x20)
            p, k = p + 1, k + 1
            if not more and c & 0x10:
                x |= -1 << (5 * k)
        counts.append(x + counts[-2] if len(counts) > 2 else x)
    if sum(counts) != h * w or min(counts, default=0) < 0:
        raise ValueError(f"RLE counts cover {sum(counts)} pixels, the mask has {h * w}")
    values = np.arange(len(counts)) % 2 == 1
    return np.repeat(values, counts).reshape((h, w), order="F")


def mask_polygons(mask: np.ndarray, min_points: int = 3) -> list[list[int]]:
    """Outer contours of a boolean mask as [x0, y0, x1, y1, ...] in its pixels (pixel centres), largest first."""
    contours, _ = cv2.findContours(np.ascontiguousarray(mask, dtype=np.uint8), cv2.RETR_EXTERNAL,
                                   cv2.CHAIN_APPROX_SIMPLE)
    contours = sorted((c for c in contours if len(c) >= min_points), key=cv2.contourArea, reverse=True)
    return [c.reshape(-1).astype(int).tolist() for c in contours]
