"""Bilinear sampling written out corner by corner (numpy, float64): the independent definition that the grid-sample
layer and zoo::ms_deform_attn are held to. No torch.grid_sample here, on purpose."""
from __future__ import annotations

import numpy as np


def pixel_coordinate(g: np.ndarray, size: int, align_corners: bool) -> np.ndarray:
    """A normalised coordinate in [-1, 1] -> pixels: -1 and 1 are the centres of the first and last pixel with
    align_corners, their outer edges without."""
    return (g + 1) / 2 * (size - 1) if align_corners else ((g + 1) * size - 1) / 2


def sample(image: np.ndarray, x: np.ndarray, y: np.ndarray, *, border: str = "zeros") -> np.ndarray:
    """image (C, H, W) read at pixel coordinates x, y (any equal shapes) -> (C, *x.shape). `border`: "zeros" (a
    corner outside the image reads 0) or "clamp" (coordinates are first clamped into the image)."""
    image = np.asarray(image, np.float64)
    _, h, w = image.shape
    x, y = np.asarray(x, np.float64), np.asarray(y, np.float64)
    if border == "clamp":
        x, y = np.clip(x, 0, w - 1), np.clip(y, 0, h - 1)
    x0, y0 = np.floor(x).astype(np.int64), np.floor(y).astype(np.int64)
    fx, fy = x - x0, y - y0
    out = np.zeros((image.shape[0], *x.shape))
    for dx, dy, weight in ((0, 0, (1 - fx) * (1 - fy)), (1, 0, fx * (1 - fy)), (0, 1, (1 - fx) * fy),
                           (1, 1, fx * fy)):
        cx, cy = x0 + dx, y0 + dy
        inside = (cx >= 0) & (cx < w) & (cy >= 0) & (cy < h)
        values = image[:, np.clip(cy, 0, h - 1), np.clip(cx, 0, w - 1)]
        out += np.where(inside, weight, 0.0) * values
    return out


def grid_sample(image: np.ndarray, grid: np.ndarray, *, align_corners: bool = False, border: str = "zeros"):
    """(N, C, H, W) and (N, H_out, W_out, 2) of normalised (x, y) -> (N, C, H_out, W_out)."""
    _, _, h, w = image.shape
    return np.stack([sample(image[n], pixel_coordinate(grid[n, ..., 0], w, align_corners),
                            pixel_coordinate(grid[n, ..., 1], h, align_corners), border=border)
                     for n in range(image.shape[0])])


def ms_deform_attn(value: np.ndarray, locations: np.ndarray, weights: np.ndarray, spatial_shapes) -> np.ndarray:
    """Multi-scale deformable attention from its definition: for each batch item, query and head, the weighted sum
    over levels and points of level l's cells (H_l x W_l, row-major in value's S axis) read bilinearly at
    (x * W_l - 0.5, y * H_l - 0.5), zero outside. (B, S, M, D), (B, Q, M, L, P, 2), (B, Q, M, L, P) -> (B, Q, M*D)."""
    b, _, m, d = value.shape
    q = locations.shape[1]
    out = np.zeros((b, q, m, d))
    start = 0
    for level, (h, w) in enumerate(spatial_shapes):
        cells = np.asarray(value[:, start:start + h * w], np.float64).reshape(b, h, w, m, d)
        start += h * w
        for n in range(b):
            for head in range(m):
                image = cells[n, :, :, head].transpose(2, 0, 1)                        # (D, H, W)
                loc = np.asarray(locations[n, :, head, level], np.float64)           # (Q, P, 2)
                read = sample(image, loc[..., 0] * w - 0.5, loc[..., 1] * h - 0.5)   # (D, Q, P)
                out[n, :, head] += (read * np.asarray(weights[n, :, head, level], np.float64)).sum(-1).T
    return out.reshape(b, q, m * d)
