"""Draw the project's own test and demo images: small synthetic scenes (shapes on gradients), deterministic.

    python tools/make_images.py --out tests/data/images

No dataset can be downloaded where the zoo is developed, and none is needed to exercise the pipeline: these scenes
have varied sizes and aspect ratios (so letterboxing pads differently), sharp edges and flat regions.
"""
from __future__ import annotations

import argparse
from pathlib import Path

import cv2
import numpy as np

SCENES = [("street", 480, 640), ("portrait", 640, 360), ("square", 320, 320), ("wide", 200, 600),
          ("tiny", 48, 64), ("odd", 333, 517)]


def draw_scene(height: int, width: int, seed: int) -> np.ndarray:
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


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=Path("tests/data/images"))
    args = parser.parse_args(argv)
    args.out.mkdir(parents=True, exist_ok=True)
    for seed, (name, h, w) in enumerate(SCENES):
        path = args.out / f"{name}.jpg"
        cv2.imwrite(str(path), draw_scene(h, w, seed), [cv2.IMWRITE_JPEG_QUALITY, 85])
        print(path)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
