"""Synthetic scenes: smooth gradients with filled shapes, deterministic per seed.

Used for the checked-in demo images (tools/make_images.py) and as the default input of `validate` and `bench`
for detectors: natural images are smooth with sharp edges, and per-pixel uniform noise is not (it drives random
detection heads far outside the range any real input reaches).
"""
from __future__ import annotations

import cv2
import numpy as np


def draw_scene(height: int, width: int, seed: int) -> np.ndarray:
    """A BGR uint8 image of height x width."""
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:height, 0:width].astype(np.float32)
    base = rng.integers(40, 200, 3)
    image = np.stack([base[c] + 40 * np.sin(x / (30 + 20 * c) + y / 50) for c in range(3)], -1)
    image = np.clip(image, 0, 255).astype(np.uint8)
    for _ in range(rng.integers(3, 8)):
        colour = tuple(int(v) for v in rng.integers(0, 256, 3))
        cx, cy = int(rng.integers(0, width)), int(rng.integers(0, height))
        size = int(rng.integers(max(4, min(height, width) // 12), max(8, min(height, width) // 3)))
        if rng.random() < 0.5:
            cv2.rectangle(image, (cx - size, cy - size // 2), (cx + size, cy + size // 2), colour, -1)
        else:
            cv2.circle(image, (cx, cy), size // 2, colour, -1)
    return image


def scene_sizes(count: int, seed: int) -> list[tuple[int, int]]:
    """Varied (height, width) pairs, so letterboxing pads differently from one item to the next."""
    rng = np.random.default_rng(seed)
    return [(int(rng.integers(120, 720)), int(rng.integers(120, 720))) for _ in range(count)]
