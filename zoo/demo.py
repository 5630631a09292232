"""The README's first command: the whole pipeline on a built-in default, nothing downloaded.

A seeded random-weight YOLOv5n (random BatchNorm statistics too) is saved as a checkpoint, turned into a .wts by
tools/gen_wts.py, built into an engine, run on the project's own images, and validated layer by layer against its
PyTorch reference. Each step is the real command line, printed before it runs. On a machine without a GPU the
engine is a reference-backend engine; with TensorRT and a GPU it is a TensorRT engine.
"""
from __future__ import annotations

import shlex
import subprocess
import sys
import time
from pathlib import Path

import torch

from zoo.yolov5.model import random_yolov5

ROOT = Path(__file__).resolve().parent.parent
IMAGES = ROOT / "tests" / "data" / "images"


def run(*args: str) -> None:
    command = [sys.executable, *args]
    print(f"\n$ {' '.join(shlex.quote(a) for a in ['python', *args])}", flush=True)
    started = time.perf_counter()
    subprocess.run(command, check=True, cwd=ROOT)
    print(f"  ({time.perf_counter() - started:.1f} s)", flush=True)


def backend_line() -> str:
    """Which backend the demo's engine will use, and why (the build line repeats it)."""
    from zoo.engine.gpu import gpu_status
    available, reason = gpu_status()
    if available:
        return f"backend: TensorRT ({reason})"
    return (f"backend: reference (CPU), because TensorRT cannot run here: {reason}. On a machine with an NVIDIA "
            f"driver, `make setup` installs TensorRT and cuda-python for the driver's CUDA version")


def main(out: Path = ROOT / "runs" / "demo") -> int:
    out.mkdir(parents=True, exist_ok=True)
    print(backend_line(), flush=True)
    checkpoint = out / "yolov5n-random.pt"
    torch.save({"model": random_yolov5("n", seed=0).state_dict()}, checkpoint)
    print(f"wrote {checkpoint.relative_to(ROOT)} (random YOLOv5n weights, seed 0: boxes are meaningless, the "
          f"pipeline is real)")
    rel = lambda p: str(p.relative_to(ROOT))  # noqa: E731
    run("tools/gen_wts.py", "-w", rel(checkpoint), "-o", rel(out / "yolov5n.wts"))
    run("-m", "zoo.yolov5", "build", "--weights", rel(out / "yolov5n.wts"), "-o", rel(out / "yolov5n.engine"),
        "--input-size", "320", "--batch", "1:2:4")
    run("-m", "zoo.yolov5", "infer", "--engine", rel(out / "yolov5n.engine"), "--source", rel(IMAGES),
        "--out", rel(out / "predictions"), "--conf", "0.5", "--max-det", "20")
    run("-m", "zoo.yolov5", "validate", "--weights", rel(out / "yolov5n.wts"), "--input-size", "320")
    print("\noutputs:")
    for path in sorted(out.rglob("*")):
        if path.is_file():
            print(f"  {rel(path)}  ({path.stat().st_size / 1024:.0f} KiB)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
