"""PP-OCR per stage and end to end: the zoo's engines against the same pipeline with ONNX Runtime running the
packages' original files (their own executor), on the rendered scenes, in one run; ratios zoo / ONNX Runtime.

    python tools/bench_ppocr.py [--variant v5|v4] [--engine ppocr.engine] [--scenes 3] [--iterations 2]

Stage times include each stage's own pre- and post-processing (det: resize, normalise, DB boxes; cls and rec:
crops to batches, decoding); "total" is wall time per image.
"""
from __future__ import annotations

import argparse
import os
import sys
import time

if __package__ in (None, ""):  # run as a script: make the repository importable
    sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def timed(stages, images, params, iterations: int) -> dict[str, float]:
    from zoo.ppocr.pipeline import read_page
    for image in images:  # warm-up
        read_page(image, stages, params)
    stages.timings.clear()
    started = time.perf_counter()
    for _ in range(iterations):
        for image in images:
            read_page(image, stages, params)
    count = iterations * len(images)
    return {**{k: v / count for k, v in stages.timings.items()}, "total": (time.perf_counter() - started) / count}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="bench_ppocr", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--variant", choices=("v5", "v4"), default="v5")
    parser.add_argument("--engine", help="a PP-OCR engine file from `python -m zoo.ppocr build` (default: built "
                                         "in memory on the auto backend)")
    parser.add_argument("--scenes", type=int, default=3, help="rendered scenes (default 3)")
    parser.add_argument("--iterations", type=int, default=2, help="timed passes (default 2)")
    args = parser.parse_args(argv)
    from zoo.engine.engines import engine_runner
    from zoo.ppocr.model import PPOCR
    from zoo.ppocr.pipeline import VARIANTS
    from zoo.ppocr.stages import onnx_runtime_stages
    from zoo.ppocr.synth import scene
    flags = argparse.Namespace(variant=args.variant, weights=None, backend="auto", device="cpu", precision="fp32",
                               calib=None, keep_fp16=[], auto_keep=0, engine=args.engine, box_thresh=None,
                               drop_score=None, no_cls=False)
    header, runner = engine_runner(PPOCR(), flags)
    if header.config["variant"] != args.variant:
        parser.error(f"--engine {args.engine} holds {header.config['variant']} networks, not {args.variant}")
    zoo_stages = runner.glue.stages
    images = [scene(i)[1] for i in range(args.scenes)]
    params = VARIANTS[args.variant]
    ours = timed(zoo_stages, images, params, args.iterations)
    theirs = timed(onnx_runtime_stages(args.variant), images, params, args.iterations)
    print(f"PP-OCR{args.variant}, {header.backend} backend ({header.precision}) vs ONNX Runtime (CPU, original "
          f"files): ms per image over {len(images)} scene(s) x {args.iterations}")
    print(f"{'stage':<7} {'zoo':>9} {'onnxruntime':>12} {'zoo / ort':>10}")
    for key in ("det", "cls", "rec", "total"):
        print(f"{key:<7} {1000 * ours[key]:9.1f} {1000 * theirs[key]:12.1f} {ours[key] / theirs[key]:10.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
