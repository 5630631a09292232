"""Crops and resizes for MTCNN: pyramid levels of the photo, and 24x24 / 48x48 crops of candidate boxes.

MTCNN's resize is an area (box-filter) average, torch's `interpolate(mode="area")`, i.e. adaptive average pooling:
output pixel i of a span of n input pixels resized to m averages input pixels floor(i*n/m) .. ceil((i+1)*n/m) - 1.

`AreaSampler` computes every output pixel of every crop at once from a summed-area table of the photo (exact
int64 sums of the uint8 pixels): four gathers and a division per output value, whatever the crop sizes, in torch
on the device that holds the photo (the GPU next to TensorRT, the CPU otherwise). Pyramid levels, one big output
each, use torch's adaptive average pooling, which is the same definition and faster there. `crop_resize_reference`
is the definition written as plain loops in numpy, the CPU reference a test holds both paths to.
"""
from __future__ import annotations

import numpy as np
import torch

MEAN, SCALE = 127.5, 0.0078125  # the networks' input: (pixel - 127.5) / 128


def _bins(start: torch.Tensor, length: torch.Tensor, size: int) -> tuple[torch.Tensor, torch.Tensor]:
    """(first, end) input index of each of `size` output bins over spans [start, start + length): (N, size) each."""
    i = torch.arange(size, device=start.device)
    first = start[:, None] + (i[None, :] * length[:, None]) // size
    end = start[:, None] + ((i[None, :] + 1) * length[:, None] + size - 1) // size
    return first, end


class AreaSampler:
    """Area-resized crops of one RGB uint8 photo (H, W, 3), on the photo's device."""

    def __init__(self, image: torch.Tensor):
        if image.dtype != torch.uint8 or image.dim() != 3 or image.shape[2] != 3:
            raise ValueError(f"expected an (H, W, 3) uint8 image, got {tuple(image.shape)} {image.dtype}")
        self.height, self.width = image.shape[:2]
        self.planes = image.permute(2, 0, 1)[None].to(torch.float32)  # (1, 3, H, W), for pyramid levels
        table = image.permute(2, 0, 1).to(torch.int64).cumsum(1).cumsum(2)
        self.table = torch.nn.functional.pad(table, (1, 0, 1, 0))  # (3, H + 1, W + 1), table[:, y, x] = sum above-left

    @property
    def device(self) -> torch.device:
        return self.table.device

    def crops(self, regions: torch.Tensor, out_h: int, out_w: int) -> torch.Tensor:
        """regions (N, 4) int64 rows [y0, y1, x0, x1) inside the photo -> (N, 3, out_h, out_w) float32 normalized
        network input."""
        regions = regions.to(device=self.device, dtype=torch.int64)
        if not len(regions):
            return torch.zeros((0, 3, out_h, out_w), device=self.device)
        y0, y1, x0, x1 = regions.unbind(1)
        ys, ye = _bins(y0, y1 - y0, out_h)   # (N, out_h)
        xs, xe = _bins(x0, x1 - x0, out_w)   # (N, out_w)
        t = self.table
        total = (t[:, ye[:, :, None], xe[:, None, :]] - t[:, ys[:, :, None], xe[:, None, :]]
                 - t[:, ye[:, :, None], xs[:, None, :]] + t[:, ys[:, :, None], xs[:, None, :]])  # (3, N, oh, ow)
        count = (ye - ys)[:, :, None] * (xe - xs)[:, None, :]
        mean = total.permute(1, 0, 2, 3).to(torch.float32) / count[:, None].to(torch.float32)
        return ((mean - MEAN) * SCALE).contiguous()  # engines read dense NCHW

    def level(self, out_h: int, out_w: int) -> torch.Tensor:
        """The whole photo resized to (out_h, out_w): a pyramid level, (1, 3, out_h, out_w)."""
        mean = torch.nn.functional.adaptive_avg_pool2d(self.planes, (out_h, out_w))
        return ((mean - MEAN) * SCALE).contiguous()


def crop_resize_reference(image: np.ndarray, region, out_h: int, out_w: int) -> np.ndarray:
    """The definition, one output pixel at a time: (3, out_h, out_w) float32 normalized, from an (H, W, 3) uint8
    image and a region (y0, y1, x0, x1)."""
    y0, y1, x0, x1 = (int(v) for v in region)
    crop = image[y0:y1, x0:x1].astype(np.float64)
    h, w = crop.shape[:2]
    out = np.empty((3, out_h, out_w), np.float64)
    for i in range(out_h):
        top, bottom = (i * h) // out_h, -(-((i + 1) * h) // out_h)
        for j in range(out_w):
            left, right = (j * w) // out_w, -(-((j + 1) * w) // out_w)
            out[:, i, j] = crop[top:bottom, left:right].reshape(-1, 3).mean(0)
    return ((out - MEAN) * SCALE).astype(np.float32)
