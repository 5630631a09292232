"""`python -m zoo.mtcnn build|infer|validate|bench`: MTCNN's own commands.

MTCNN is three networks and a cascade, so its commands differ from the shared ones (zoo.engine.commands) where a
single network is assumed: `build` writes three engines into a folder, `infer` runs the cascade, `validate` checks
each network layer by layer and then the whole cascade against a pure PyTorch cascade, and `bench` times each stage
against that PyTorch cascade. Errors are one line on stderr, exit code 2 (tracebacks with --verbose); `validate`
exits 1 when something is over tolerance.
"""
from __future__ import annotations

import argparse
import json
from pathlib import Path

import cv2
import numpy as np
import torch

from zoo.engine.backends import choose_backend
from zoo.engine.files import write_bytes_atomic, write_text_atomic
from zoo.engine.workflow import UserError, backend_label, say

from .cascade import CascadeParams, Faces
from .pipeline import build_folder, in_memory, make_cascade, open_folder
from .validation import compare_cascades, format_cascade_rows, torch_networks, validate_networks

DEFAULT_PHOTOS = ("astronaut", "grace_hopper", "chelsea", "coffee", "china")


# ----------------------------------------------------------------------------------------------------------------
# flags


def _thresholds(text: str) -> tuple[float, float, float]:
    try:
        values = tuple(float(v) for v in text.split(","))
    except ValueError:
        values = ()
    if len(values) != 3 or not all(0 <= v <= 1 for v in values):
        raise argparse.ArgumentTypeError(f"thresholds {text!r} must be three probabilities P,R,O (e.g. 0.6,0.7,0.7)")
    return values


def _common(parser, engine: bool = False, precision: bool = False) -> None:
    parser.add_argument("--weights-dir", "-w", type=Path,
                        help="folder with pnet.pt, rnet.pt, onet.pt (facenet-pytorch's files; .wts also read); "
                             "default: the trained weights installed by the project's setup")
    if engine:
        parser.add_argument("--engine", "-e", type=Path,
                            help="engine folder written by `build` (otherwise the networks are built in memory)")
    if precision:
        parser.add_argument("--precision", choices=("fp32", "fp16", "int8"), default="fp32",
                            help="network precision (default fp32); int8 needs --calib")
        parser.add_argument("--calib", type=Path,
                            help="int8: folder with pnet.calib, rnet.calib, onet.calib (tools/mtcnn_int8.py)")
    parser.add_argument("--backend", choices=("auto", "reference", "tensorrt"), default="auto",
                        help="auto: TensorRT where a GPU and TensorRT exist, else ONNX Runtime when installed, else "
                             "the CPU reference backend")
    parser.add_argument("--verbose", "-v", action="store_true", help="show tracebacks on errors")


def _cascade_flags(parser) -> None:
    d = CascadeParams()
    parser.add_argument("--min-face", type=int, default=d.min_face, help=f"smallest face in pixels ({d.min_face})")
    parser.add_argument("--factor", type=float, default=d.factor, help=f"pyramid scale step ({d.factor})")
    parser.add_argument("--thresholds", type=_thresholds, default=d.thresholds,
                        help="face probability thresholds of P-Net, R-Net, O-Net (default 0.6,0.7,0.7)")


def _params(args) -> CascadeParams:
    if args.min_face < 12:
        raise UserError(f"--min-face {args.min_face}: must be at least 12 (P-Net's window)")
    if not 0.1 <= args.factor < 1:
        raise UserError(f"--factor {args.factor}: must be in [0.1, 1)")
    return CascadeParams(min_face=args.min_face, factor=args.factor, thresholds=tuple(args.thresholds))


def _photos(source: Path | None) -> list[tuple[str, Path]]:
    from zoo.assets import asset_path
    from zoo.vision.images import list_images
    if source is None:
        return [(name, asset_path(name)) for name in DEFAULT_PHOTOS]
    try:
        return [(p.name, p) for p in list_images(source)]
    except (FileNotFoundError, ValueError) as e:
        raise UserError(str(e)) from None


def _read_rgb(path: Path) -> tuple[np.ndarray | None, str | None]:
    from zoo.vision.images import try_read_image
    image, reason = try_read_image(path)
    return (None, reason) if image is None else (cv2.cvtColor(image, cv2.COLOR_BGR2RGB), None)


def _runners(args, precision: bool = True):
    if getattr(args, "engine", None):
        if args.precision != "fp32" or args.calib:
            raise UserError("--precision and --calib choose how to build in memory; an --engine folder has its own")
        runners = open_folder(args.engine, args.backend)
        say(f"engines {args.engine}: " + ", ".join(f"{s} {r.header.precision} on {type(r.runner).__name__}"
                                                   for s, r in runners.items()))
    else:
        backend = choose_backend(args.backend)
        mode = args.precision if precision else "fp32"
        runners = in_memory(args.weights_dir, backend, mode, getattr(args, "calib", None))
        say(f"running on the {backend_label(backend)}")
    return runners


# ----------------------------------------------------------------------------------------------------------------
# commands


def add_build(parser) -> None:
    _common(parser, precision=True)
    parser.add_argument("--output", "-o", type=Path, required=True,
                        help="folder to write pnet.engine, rnet.engine, onet.engine into")
    parser.add_argument("--max-side", type=int, default=1920,
                        help="longest photo side P-Net's height/width profile must serve (default 1920)")
    parser.add_argument("--min-face", type=int, default=20,
                        help="the smallest --min-face infer will use; with --max-side it sizes P-Net's profile")
    parser.add_argument("--max-batch", type=int, default=256, help="R-Net/O-Net crops per run (default 256)")


def run_build(args) -> int:
    if args.output.exists() and not args.output.is_dir():
        raise UserError(f"--output {args.output}: exists and is not a folder")
    if args.max_side < 12 or args.max_batch < 1 or args.min_face < 12:
        raise UserError("--max-side and --min-face must be at least 12, --max-batch at least 1")
    backend = choose_backend(args.backend, run_on_onnx=False)
    say(f"building MTCNN ({args.precision}) on the {backend_label(backend)}")
    headers = build_folder(args.output, args.weights_dir, backend, args.precision, args.calib,
                           max_side=args.max_side, min_face=args.min_face, max_batch=args.max_batch)
    for stage, header in headers.items():
        shape = header.profile["max"] if header.profile else f"batch {':'.join(map(str, header.batch))}"
        say(f"wrote {args.output / (stage + '.engine')} ({header.precision}, {header.backend}; profile up to "
            f"{shape})")
    return 0


def add_infer(parser) -> None:
    _common(parser, engine=True, precision=True)
    parser.add_argument("--source", "-s", type=Path, required=True, help="an image or a folder of images")
    parser.add_argument("--out", type=Path, help="folder for predictions.jsonl and annotated images")
    _cascade_flags(parser)


def run_infer(args) -> int:
    photos = _photos(args.source)
    if args.out:  # never write over an input: annotated images are <out>/<stem>.jpg
        inputs = {p.resolve() for _, p in photos}
        clash = next((p for _, p in photos if (args.out / f"{p.stem}.jpg").resolve() in inputs), None)
        if clash is not None:
            raise UserError(f"--out {args.out}: the annotated image of {clash} would overwrite an input; choose "
                            f"another folder")
    cascade = make_cascade(_runners(args), _params(args))
    records = []
    for index, (name, path) in enumerate(photos, 1):
        image, reason = _read_rgb(path)
        if image is None:
            records.append({"file": str(path), "error": reason})
            say(f"[{index}/{len(photos)}] {path.name}: skipped ({reason})")
            continue
        faces = cascade.detect(image)
        records.append({"file": str(path), "faces": faces.records()})
        say(f"[{index}/{len(photos)}] {path.name}: {len(faces.scores)} face(s)")
        if args.out:
            _write_annotated(args.out / f"{path.stem}.jpg", image, faces)
    lines = "".join(json.dumps(r) + "\n" for r in records)
    if args.out:
        write_text_atomic(args.out / "predictions.jsonl", lines)
        say(f"wrote {args.out / 'predictions.jsonl'} and {sum('faces' in r for r in records)} annotated images")
    else:
        print(lines, end="")
    return 0


def _write_annotated(path: Path, image_rgb: np.ndarray, faces: Faces) -> None:
    from zoo.vision.draw import draw_detections, draw_points
    dets = torch.cat([faces.boxes.cpu(), faces.scores.cpu()[:, None], torch.zeros(len(faces.scores), 1)], 1)
    out = draw_points(draw_detections(cv2.cvtColor(image_rgb, cv2.COLOR_RGB2BGR), dets, ["face"]),
                      faces.landmarks.cpu())
    ok, data = cv2.imencode(".jpg", out)
    if not ok:
        raise UserError(f"{path}: could not encode the annotated image")
    write_bytes_atomic(path, data.tobytes())


def add_validate(parser) -> None:
    _common(parser)
    parser.add_argument("--tolerance", type=float, default=1e-4,
                        help="per layer: max |net - ref| <= tol * max(1, max|ref|) (default 1e-4)")
    parser.add_argument("--source", "-s", type=Path,
                        help="photos for the cascade comparison (default: astronaut, grace_hopper, chelsea, "
                             "coffee, china from the installed packages)")
    parser.add_argument("--box-tolerance", type=float, default=2.0,
                        help="cascade: max |box or landmark difference| in pixels vs PyTorch (default 2)")
    _cascade_flags(parser)


def run_validate(args) -> int:
    backend = choose_backend(args.backend, run_on_onnx=False)
    say(f"validating MTCNN against PyTorch FP32 on the {backend_label(backend)}")
    ok = True
    for stage, table, passed in validate_networks(args.weights_dir, backend, args.tolerance):
        print(f"== {stage}\n{table}")
        ok &= passed
    params = _params(args)
    runners = in_memory(args.weights_dir, backend)
    rows = compare_cascades(make_cascade(runners, params), torch_networks(args.weights_dir),
                            _photos(args.source), params, args.box_tolerance)
    print(format_cascade_rows(rows, args.box_tolerance))
    return 0 if ok and all(r.ok for r in rows) else 1


def add_bench(parser) -> None:
    _common(parser, engine=True, precision=True)
    parser.add_argument("--source", "-s", type=Path, help="photos (default: the five installed photos)")
    parser.add_argument("--iterations", type=int, default=3, help="timed passes over the photos (default 3)")
    parser.add_argument("--warmup", type=int, default=1, help="untimed passes first (default 1)")
    parser.add_argument("--compare-torch", action="store_true",
                        help="also time the pure PyTorch cascade (eager, CPU) on the same photos, same run")
    _cascade_flags(parser)


def run_bench(args) -> int:
    from .validation import bench_cascades
    params = _params(args)
    cascade = make_cascade(_runners(args), params)
    torch_nets = torch_networks(args.weights_dir) if args.compare_torch else None
    print(bench_cascades(cascade, torch_nets, _photos(args.source), params, args.warmup, args.iterations))
    return 0


COMMANDS = {
    "build": ("build three engines (P-Net with a height/width profile, R-Net, O-Net) into a folder",
              add_build, run_build),
    "infer": ("run the cascade on photos: JSON lines (box, score, five landmarks) and annotated images",
              add_infer, run_infer),
    "validate": ("each network layer by layer vs PyTorch, then the cascade vs a pure PyTorch cascade on photos",
                 add_validate, run_validate),
    "bench": ("time each stage (pyramid + P-Net, R-Net, O-Net, NMS), optionally vs the PyTorch cascade",
              add_bench, run_bench),
}


def make_parser() -> argparse.ArgumentParser:
    from .model import MTCNNModel
    parser = argparse.ArgumentParser(prog="python -m zoo.mtcnn", description=MTCNNModel.summary)
    sub = parser.add_subparsers(dest="command", required=True)
    for name, (help_text, add, _) in COMMANDS.items():
        add(sub.add_parser(name, help=help_text, description=help_text))
    return parser


def main(argv: list[str] | None = None) -> int:
    args = make_parser().parse_args(argv)
    try:
        return COMMANDS[args.command][2](args)
    except KeyboardInterrupt:
        say("interrupted")
        return 130
    except Exception as e:  # one clear line; the traceback only on request
        if args.verbose:
            raise
        say(f"zoo.mtcnn {args.command}: error: {e}")
        return 2
