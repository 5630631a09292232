"""INT8 on a trained detector: MTCNN calibrated on the photos, its faces compared with FP32's (and FP16's).

    python tools/mtcnn_int8.py [--method percentile|entropy|max] [--calib-out FOLDER] [--photos a,b,...]

Calibration data are what each network sees in the cascade: P-Net gets the pyramid levels of every photo, R-Net
the 24x24 crops of P-Net's candidates, O-Net the 48x48 crops of R-Net's (from the FP32 cascade). Each network is
calibrated with the zoo's calibration (two passes: ranges, then histograms) and built with explicit Q/DQ (INT8
inputs per tensor, weights per output channel). Then the FP32, FP16 and INT8 cascades run on every photo, and the
table says, per precision, how many of FP32's faces it keeps (IoU >= 0.5) and how far its boxes, landmarks and
scores are from FP32's. `--calib-out FILE` writes the pipeline's cache (names `<stage>/<tensor>`) for
`python -m zoo.mtcnn build --precision int8 --calib FILE`. Runs on the reference backend, which executes FP16
storage and Q/DQ exactly, or on TensorRT where it is installed.
"""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import cv2
import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from zoo.assets import PHOTOS, asset_path  # noqa: E402
from zoo.engine import quantization  # noqa: E402
from zoo.engine.backends import choose_backend  # noqa: E402
from zoo.engine.calibration import CalibrationCache  # noqa: E402
from layers.precision import Precision  # noqa: E402
from zoo.engine.pipeline import StageRunner  # noqa: E402
from zoo.engine.engines import build_stage
from zoo.engine.networks import define_network
from zoo.mtcnn.model import MTCNN, make_cascade  # noqa: E402
from zoo.mtcnn.nets import STAGES  # noqa: E402
from zoo.vision.nms import _iou_matrix  # noqa: E402


def log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def read_photos(names) -> dict[str, np.ndarray]:
    return {n: cv2.cvtColor(cv2.imread(str(asset_path(n))), cv2.COLOR_BGR2RGB) for n in names}


STAGE_FLAGS = argparse.Namespace(weights=None, max_side=1920, min_face=20, max_crops=256)


def runners_at(backend, precisions: dict[str, Precision]) -> dict[str, StageRunner]:
    runners = {}
    for stage in MTCNN().load_stages(STAGE_FLAGS):
        header, payload = build_stage(stage, backend, precisions[stage.name], STAGE_FLAGS)
        runners[stage.name] = StageRunner(header, backend.load(payload))
    return runners


def calibration_inputs(photos: dict[str, np.ndarray], fp32: dict[str, StageRunner]) -> dict[str, list[np.ndarray]]:
    """Batches per network: what each sees in the FP32 cascade (MTCNN.calibration_batches)."""
    return {stage: list(MTCNN().calibration_batches(stage, fp32, list(photos.values()))) for stage in STAGES}


def calibrate(backend, data, method: str, percentile: float) -> dict[str, dict[str, float]]:
    scales = {}
    for stage in MTCNN().load_stages(STAGE_FLAGS):
        started = time.perf_counter()
        scales[stage.name], count = quantization.calibrate(
            lambda b, precision: define_network(stage.network, b, stage.weights, stage.config, precision), backend,
            lambda: iter(data[stage.name]), stage.network.input_name, method, percentile, 64, log=lambda m: None)
        log(f"{stage.name}: {len(scales[stage.name])} tensor scales from {count} inputs ({method}) in "
            f"{time.perf_counter() - started:.1f} s")
    return scales


def compare(reference, other) -> tuple[int, list[float], list[float], list[float]]:
    """(FP32 faces matched, box diffs, landmark diffs, score diffs) over matched faces (IoU >= 0.5, greedy)."""
    if not len(reference.scores) or not len(other.scores):
        return 0, [], [], []
    iou = _iou_matrix(reference.boxes.float(), other.boxes.float())
    used, boxes, marks, scores = set(), [], [], []
    for i in torch.argsort(reference.scores, descending=True).tolist():
        j = max((j for j in range(len(other.scores)) if j not in used), key=lambda j: float(iou[i, j]), default=None)
        if j is None or iou[i, j] < 0.5:
            continue
        used.add(j)
        boxes.append(float((reference.boxes[i] - other.boxes[j]).abs().max()))
        marks.append(float((reference.landmarks[i] - other.landmarks[j]).abs().max()))
        scores.append(float((reference.scores[i] - other.scores[j]).abs()))
    return len(used), boxes, marks, scores


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--method", choices=("percentile", "entropy", "max"), default="percentile")
    parser.add_argument("--percentile", type=float, default=99.99)
    parser.add_argument("--photos", default=",".join(PHOTOS), help="asset names (default: every installed photo)")
    parser.add_argument("--backend", choices=("auto", "reference", "tensorrt"), default="auto")
    parser.add_argument("--calib-out", type=Path, help="calibration cache to write (all three networks' scales)")
    args = parser.parse_args()
    backend = choose_backend(args.backend)
    photos = read_photos([n for n in args.photos.split(",") if n])
    fp32_runners = runners_at(backend, {s: Precision("fp32") for s in STAGES})
    fp32 = make_cascade(fp32_runners)
    data = calibration_inputs(photos, fp32_runners)
    log("calibration inputs: " + ", ".join(f"{s} {sum(len(b) for b in data[s])}" for s in STAGES))
    scales = calibrate(backend, data, args.method, args.percentile)
    if args.calib_out:  # the pipeline's one cache, as `python -m zoo.mtcnn calibrate` writes it
        named = {f"{stage}/{name}": scale for stage in STAGES for name, scale in scales[stage].items()}
        CalibrationCache("mtcnn", "mtcnn", args.method, len(photos), MTCNN().input_shape({}), named).save(
            args.calib_out)
        log(f"wrote {args.calib_out}")
    cascades = {"fp16": make_cascade(runners_at(backend, {s: Precision("fp16") for s in STAGES})),
                "int8": make_cascade(runners_at(backend, {s: Precision("int8", scales[s]) for s in STAGES}))}
    found = {name: {"fp32": fp32.detect(image)} for name, image in photos.items()}
    for name, image in photos.items():
        for mode, cascade in cascades.items():
            found[name][mode] = cascade.detect(image)
        log(f"{name}: " + ", ".join(f"{m} {len(f.scores)}" for m, f in found[name].items()))
    print(f"MTCNN INT8 ({args.method}) vs FP32 on {len(photos)} photos, {backend.name} backend")
    print(f"{'photo':<16} {'fp32':>4} {'best p':>7} " + " ".join(f"{m + ' kept, box px, marks px':>23}"
                                                             for m in cascades))
    totals = {m: [0, [], [], [], 0] for m in cascades}
    for name in photos:
        ref = found[name]["fp32"]
        cells = []
        for mode in cascades:
            kept, boxes, marks, scores = compare(ref, found[name][mode])
            t = totals[mode]
            t[0] += kept
            t[1] += boxes
            t[2] += marks
            t[3] += scores
            t[4] += len(found[name][mode].scores)
            cells.append(f"{kept:>4}/{len(found[name][mode].scores):<4} {max(boxes, default=0):6.2f} "
                         f"{max(marks, default=0):6.2f}")
        best = f"{float(ref.scores.max()):.4f}" if len(ref.scores) else "-"
        print(f"{name:<16} {len(ref.scores):>4} {best:>7} " + " ".join(f"{c:>23}" for c in cells))
    total_ref = sum(len(found[n]["fp32"].scores) for n in photos)
    print(f"\n{'precision':<9} {'kept':>9} {'extra':>5} {'box px max':>10} {'mean':>6} {'marks px max':>12} "
          f"{'mean':>6} {'score max':>9}")
    for mode, (kept, boxes, marks, scores, count) in totals.items():
        print(f"{mode:<9} {kept:>4}/{total_ref:<4} {count - kept:>5} {max(boxes, default=0):10.2f} "
              f"{np.mean(boxes) if boxes else 0:6.2f} {max(marks, default=0):12.2f} "
              f"{np.mean(marks) if marks else 0:6.2f} {max(scores, default=0):9.2e}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
