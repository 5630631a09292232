"""Augmented crops of the real photographs that setup installs, for INT8 calibration and held-out evaluation.

    python -m tools.make_crops --out runs/crops --calib 32 --eval 8

Each photograph of `zoo.assets.PHOTOS` gives `--calib` crops into `OUT/calib/` and `--eval` crops into `OUT/eval/`,
from two independent random streams (the held-out crops are never calibrated on). A crop is a random box of 25% to
100% of the photo's area and aspect 3/4 to 4/3 (the usual random-resized-crop), flipped left-right half the time,
its brightness and contrast scaled by up to 20%, resized so its short side is 256 px, written as PNG. Deterministic
for a seed. The folder is an output of this tool, not part of the repository.
"""
from __future__ import annotations

import argparse
import math
from pathlib import Path

import cv2
import numpy as np

from zoo.assets import PHOTOS, asset_path

SHORT_SIDE = 256


def random_crop(image: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    h, w = image.shape[:2]
    for _ in range(20):
        area = h * w * rng.uniform(0.25, 1.0)
        aspect = math.exp(rng.uniform(math.log(3 / 4), math.log(4 / 3)))
        cw, ch = round(math.sqrt(area * aspect)), round(math.sqrt(area / aspect))
        if 0 < cw <= w and 0 < ch <= h:
            top, left = int(rng.integers(0, h - ch + 1)), int(rng.integers(0, w - cw + 1))
            crop = image[top:top + ch, left:left + cw]
            break
    else:
        crop = image
    if rng.random() < 0.5:
        crop = crop[:, ::-1]
    gain, offset = rng.uniform(0.8, 1.2), rng.uniform(-0.1, 0.1) * 255
    crop = np.clip(crop.astype(np.float32) * gain + offset, 0, 255).astype(np.uint8)
    scale = SHORT_SIDE / min(crop.shape[:2])
    size = (max(SHORT_SIDE, round(crop.shape[1] * scale)), max(SHORT_SIDE, round(crop.shape[0] * scale)))
    return cv2.resize(crop, size, interpolation=cv2.INTER_AREA if scale < 1 else cv2.INTER_LINEAR)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=Path("runs/crops"), help="folder to write calib/ and eval/ in")
    parser.add_argument("--calib", type=int, default=32, help="calibration crops per photograph (default 32)")
    parser.add_argument("--eval", type=int, default=8, help="held-out crops per photograph (default 8)")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    for split, count, stream in (("calib", args.calib, 0), ("eval", args.eval, 1)):
        folder = args.out / split
        folder.mkdir(parents=True, exist_ok=True)
        rng = np.random.default_rng([args.seed, stream])
        for name in PHOTOS:
            image = cv2.imread(str(asset_path(name)), cv2.IMREAD_COLOR)
            for i in range(count):
                cv2.imwrite(str(folder / f"{name}_{i:03d}.png"), random_crop(image, rng))
        print(f"{folder}: {count * len(PHOTOS)} crops")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
