"""`infer`: run an engine (or weights built in memory) on images, a folder or a .npy tensor."""
from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np

from ..files import refuse_overwrite, refuse_write_over, write_bytes_atomic, write_text_atomic
from ..quantization import as_input
from ..engines import check_batch_in_profile, engine_runner
from ..errors import say, UserError
from ..flags import add_common_flags, bounded, load_npy, positive_int
from ..progress import Progress

HELP = "run an engine (or weights) on images, a folder or a .npy tensor"


def add_arguments(parser, model) -> None:
    add_common_flags(parser, model)
    parser.add_argument("--engine", "-e", type=Path, help="engine built by `build` (otherwise built in memory)")
    parser.add_argument("--source", "-s", type=Path, required=True, help="image file, folder of images, or .npy")
    parser.add_argument("--out", type=Path, help="folder for predictions.jsonl (and annotated images)")
    parser.add_argument("--batch", type=positive_int, help="images per batch (default: the engine's max batch)")
    parser.add_argument("--prefetch", type=bounded(int, 0, 16), default=2,
                        help="batches decoded ahead while the network runs, and post-processed (NMS, drawing, "
                             "writing) behind it (default 2; 0: one step after another)")
    parser.add_argument("--triton", metavar="URL",
                        help="send the images to a Triton server running `export triton`'s ensemble instead "
                             "(e.g. http://127.0.0.1:8000); its post-processing flags are those of the export")
    parser.add_argument("--triton-model", metavar="NAME", help="the ensemble's name (default: the family's name)")
    from zoo.vision.images import DEFAULT_MAX_PIXELS, MAX_PIXELS_HELP
    parser.add_argument("--max-pixels", type=positive_int, default=DEFAULT_MAX_PIXELS, help=MAX_PIXELS_HELP)
    model.add_infer_arguments(parser)


def run(model, args) -> int:
    if args.triton:
        return run_triton(model, args)
    from zoo.vision.images import list_images
    out_dir = args.out
    is_array = args.source.suffix == ".npy"
    paths = []
    if not is_array:
        try:
            paths = list_images(args.source)
        except (FileNotFoundError, ValueError) as e:
            raise UserError(str(e)) from None
    inputs = {"--source": args.source, "--weights": getattr(args, "weights", None), "--engine": args.engine}
    if out_dir:
        refuse_overwrite({"--out": out_dir, "--out predictions.jsonl": out_dir / "predictions.jsonl"}, inputs)
        if not getattr(args, "no_draw", False):  # annotated images are named after their inputs
            for path in paths:
                refuse_write_over(out_dir / path.name, [path])
    header, runner = engine_runner(model, args)
    config = header.config
    model.check_infer_arguments(args, config)
    if out_dir:
        out_dir.mkdir(parents=True, exist_ok=True)
    records: list[dict] = []
    if is_array:
        batch = load_npy(args.source)
        if batch.ndim != len(header.input_shape) or list(batch.shape[1:]) != header.input_shape[1:]:
            raise UserError(f"{args.source}: shape {list(batch.shape)} does not match the engine's input "
                            f"{header.input_shape} (-1: the batch)")
        check_batch_in_profile(len(batch), header.batch, args.source)
        outputs = runner.run({header.input_name: as_input(batch, header.precision)})
        records = model.records(outputs, [{"index": i} for i in range(len(batch))], config, args)
    else:
        size = args.batch or header.batch[2]
        check_batch_in_profile(size, header.batch, f"--batch {size}")
        records = infer_folder(model, runner, header, paths, size, args, args.prefetch)
    report(records, out_dir)
    return 0


def infer_folder(model, runner, header, paths: list[Path], size: int, args, prefetch: int = 2) -> list[dict]:
    """The records of every image, in the order of `paths`, with the network never waiting on files.

    Three stages: decoding + letterbox (`model.load_batch`) in a loader thread, up to `prefetch` batches ahead; the
    network on this thread; post-processing (`model.records`: NMS, drawing and writing annotated images) in one
    writer thread, at most `prefetch` batches behind. Both queues are bounded, so memory stays at about
    2 * prefetch + 1 batches whatever the folder's size. cv2, numpy, torch and ONNX Runtime release the GIL in
    their kernels, which is what lets the stages overlap. prefetch 0 runs the stages one after another (the same
    records, in the same order). An exception in any stage stops the loop: queued work is cancelled, the threads
    are joined, and the exception propagates.
    """
    from collections import deque
    from concurrent.futures import Future, ThreadPoolExecutor
    config, max_pixels = header.config, getattr(args, "max_pixels", None)
    chunks = [paths[start:start + size] for start in range(0, len(paths), size)]

    def load(chunk):
        return model.load_batch(chunk, config, runner.device, max_pixels=max_pixels)

    def post(batch_outputs, contexts):
        if batch_outputs is None:  # nothing in the batch could be read: its error records only
            return [c for c in contexts if isinstance(c, dict) and "error" in c]
        return model.records(batch_outputs, contexts, config, args)

    def done(value):
        future = Future()
        future.set_result(value)
        return future

    records: list[dict] = []
    with Progress(len(paths), "infer", unit="img") as bar, \
            ThreadPoolExecutor(1, thread_name_prefix="zoo-load") as loader, \
            ThreadPoolExecutor(1, thread_name_prefix="zoo-post") as writer:
        loads: deque = deque()
        posts: deque = deque()
        try:
            for index, chunk in enumerate(chunks):
                if prefetch:
                    while len(loads) < prefetch and index + len(loads) < len(chunks):  # keep the loader ahead
                        loads.append(loader.submit(load, chunks[index + len(loads)]))
                    batch, contexts = loads.popleft().result()
                else:
                    batch, contexts = load(chunk)
                outputs = runner.run({header.input_name: as_input(batch, header.precision)}) if len(batch) else None
                posts.append(writer.submit(post, outputs, contexts) if prefetch else done(post(outputs, contexts)))
                while len(posts) > prefetch:  # the writer at most `prefetch` batches behind
                    records += posts.popleft().result()
                bar.update(len(chunk), note=chunk[0].name)
            while posts:
                records += posts.popleft().result()
        except BaseException:
            for future in (*loads, *posts):
                future.cancel()
            raise
    return records


def run_triton(model, args) -> int:
    """The records of a Triton server for each image (annotated images drawn here from the records)."""
    from zoo.triton.client import infer_files
    from zoo.vision.draw import draw_record
    from zoo.vision.images import list_images, read_image
    parser = argparse.ArgumentParser(add_help=False)
    model.add_infer_arguments(parser)
    changed = [k for k, v in vars(parser.parse_args([])).items() if k != "no_draw" and getattr(args, k) != v]
    if changed:
        raise UserError(f"--{changed[0].replace('_', '-')}: with --triton, post-processing flags are fixed by "
                        "`export triton` (export again with them)")
    try:
        paths = list_images(args.source)
        records = infer_files(args.triton, args.triton_model or model.name, paths)
    except (FileNotFoundError, ValueError, ConnectionError) as e:
        raise UserError(str(e)) from None
    if args.out:
        refuse_overwrite({"--out": args.out, "--out predictions.jsonl": args.out / "predictions.jsonl"},
                         {"--source": args.source})
        args.out.mkdir(parents=True, exist_ok=True)
        for path, record in zip(paths, records):
            refuse_write_over(args.out / path.name, [path])
            if "detections" in record and not getattr(args, "no_draw", False):
                write_image_atomic(args.out / path.name, draw_record(read_image(path), record))
    report(records, args.out)
    return 0


def report(records: list[dict], out_dir: Path | None) -> None:
    if out_dir:  # the file is for programs; the terminal gets one line per item
        write_jsonl(out_dir / "predictions.jsonl", records)
        for record in records:
            say(summary(record))
        say(f"wrote {out_dir / 'predictions.jsonl'}")
    else:
        for record in records:
            print(json_line(record))


def summary(record: dict) -> str:
    name = record.get("file", f"item {record.get('index', '')}")
    if "error" in record:
        return f"{name}: {record['error']}"
    if "detections" in record:
        return f"{name}: {len(record['detections'])} detections"
    if "faces" in record:
        return f"{name}: {len(record['faces'])} faces"
    if "lines" in record:  # text read (PP-OCR)
        return f"{name}: {len(record['lines'])} line(s): " + " / ".join(line["text"] for line in record["lines"])
    if "top" in record:
        best = record["top"][0]
        return f"{name}: class {best.get('class_name', best['class_id'])} ({best['score']:.3f})"
    if "segments" in record:  # semantic segmentation: the classes that cover most of the image
        biggest = sorted(record["segments"], key=lambda s: -s["share"])[:3]
        return f"{name}: {len(record['segments'])} classes, " + ", ".join(
            f"{s['class_name']} {100 * s['share']:.0f}%" for s in biggest)
    if "depth" in record:
        d = record["depth"]
        return f"{name}: depth {d['min_m']:g} to {d['max_m']:g} m (median {d['median_m']:g})"
    return f"{name}: {record}"


def write_jsonl(path: Path, records: list[dict]) -> None:
    write_text_atomic(path, "".join(json_line(r) + "\n" for r in records))


def json_line(record) -> str:
    """Strict JSON: a NaN or infinite score (NaN inputs give them) becomes null, never the invalid token NaN."""
    try:  # the usual record has none: only a refused one is walked value by value
        return json.dumps(record, allow_nan=False)
    except ValueError:
        return json.dumps(_finite(record), allow_nan=False)


def _finite(value):
    if isinstance(value, float):
        return value if np.isfinite(value) else None
    if isinstance(value, dict):
        return {k: _finite(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_finite(v) for v in value]
    return value


def write_image_atomic(path: Path, image: np.ndarray) -> None:
    import cv2
    ok, encoded = cv2.imencode(path.suffix or ".jpg", image)
    if not ok:
        raise UserError(f"{path}: cannot encode an image of this type")
    write_bytes_atomic(path, encoded.tobytes())
