"""Images per second of `infer` over a folder: a baseline checkout against this one, interleaved, in one run.

    python tools/bench_infer.py --baseline /path/to/other/checkout [--images 64] [--rounds 2] [-- extra infer flags]

The folder holds `--images` files cycled from the project's set (tests/data/images and the real photos of
zoo.assets, when installed), copied under distinct names into a temporary folder. Each round runs the baseline's
`python -m zoo.yolov5 infer` and then this checkout's, both with their defaults (--source the folder, yolov5s, 640,
seeded random weights, --out a fresh folder: predictions and annotated images written). The time is the whole
command's wall time (start, build in memory, the loop, writing), so images/s is what a user waits for; the median
over rounds is reported, with the load average before and after.
"""
from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def project_images() -> list[Path]:
    sys.path.insert(0, str(ROOT))
    from zoo.assets import PHOTOS, asset_path, available
    files = sorted((ROOT / "tests" / "data" / "images").iterdir())
    return files + [asset_path(name) for name in PHOTOS if available(name)]


def make_folder(into: Path, count: int) -> Path:
    sources = project_images()
    folder = into / "images"
    folder.mkdir()
    for i in range(count):
        source = sources[i % len(sources)]
        shutil.copyfile(source, folder / f"{i:03d}_{source.name}")
    return folder


def time_infer(checkout: Path, folder: Path, out: Path, extra: list[str]) -> float:
    command = [sys.executable, "-m", "zoo.yolov5", "infer", "--variant", "s", "--input-size", "640",
               "--source", str(folder), "--out", str(out), *extra]
    env = {**os.environ, "PYTHONPATH": str(checkout)}
    started = time.perf_counter()
    result = subprocess.run(command, cwd=checkout, env=env, capture_output=True, text=True)
    elapsed = time.perf_counter() - started
    if result.returncode:
        raise SystemExit(f"{checkout}: infer failed ({result.returncode}):\n{result.stderr[-2000:]}")
    return elapsed


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--baseline", type=Path, required=True, help="checkout whose `infer` is the baseline")
    parser.add_argument("--images", type=int, default=64)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("extra", nargs="*", help="flags added to both infer commands (after --)")
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="zoo-bench-infer-") as tmp:
        folder = make_folder(Path(tmp), args.images)
        load_before = os.getloadavg()
        times: dict[str, list[float]] = {"baseline": [], "this checkout": []}
        for round_ in range(args.rounds):
            for name, checkout in (("baseline", args.baseline), ("this checkout", ROOT)):
                out = Path(tmp) / f"out-{name.replace(' ', '_')}-{round_}"
                times[name].append(time_infer(checkout, folder, out, args.extra))
                print(f"round {round_ + 1} {name}: {times[name][-1]:.1f} s", file=sys.stderr, flush=True)
        load_after = os.getloadavg()
    print(f"infer yolov5s 640, {args.images} images, whole command, median of {args.rounds} rounds "
          f"(load average {load_before[0]:.1f} before, {load_after[0]:.1f} after)")
    medians = {name: statistics.median(t) for name, t in times.items()}
    for name, seconds in medians.items():
        print(f"{name:>14}: {seconds:7.1f} s  {args.images / seconds:6.2f} images/s")
    print(f"speed-up: {medians['baseline'] / medians['this checkout']:.2f}x")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
