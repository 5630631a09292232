"""Draw the project's own test and demo images: small synthetic scenes (shapes on gradients), deterministic.

    python tools/make_images.py --out tests/data/images

No dataset can be downloaded where the zoo is developed, and none is needed to exercise the pipeline: these scenes
have varied sizes and aspect ratios (so letterboxing pads differently), sharp edges and flat regions.
"""
from __future__ import annotations

import argparse
from pathlib import Path

import cv2

from zoo.vision.synthetic import draw_scene

SCENES = [("street", 480, 640), ("portrait", 640, 360), ("square", 320, 320), ("wide", 200, 600),
          ("tiny", 48, 64), ("odd", 333, 517)]


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
