"""`calibrate`: INT8 activation scales over a folder of images, written to a readable cache."""
from __future__ import annotations

import time
from pathlib import Path

from .. import quantization
from ..backends import choose_backend
from ..calibration import CalibrationCache
from ..files import refuse_overwrite
from ..pipeline import StageRunner, is_pipeline
from layers.precision import Precision
from ..engines import backend_label, build_stage
from ..errors import say, UserError
from ..flags import add_common_flags, bounded, non_negative_int, positive_int
from ..networks import define_network, load_weights, model_stages
from ..progress import Progress

HELP = "INT8 calibration over a folder of images -> cache file"


def add_arguments(parser, model) -> None:
    add_common_flags(parser, model)
    parser.add_argument("--images", type=Path, required=True, help="folder of calibration images")
    parser.add_argument("--method", choices=("entropy", "percentile", "max"), default="percentile",
                        help="threshold per tensor: percentile (default; measured best on the zoo's models), "
                             "entropy (TensorRT's KL search, which clips SiLU tails hard and collapses on the ReLU "
                             "zeros of the trained MobileNets), max")
    parser.add_argument("--percentile", type=bounded(float, 0, 100, lo_open=True), default=99.99,
                        help="for --method percentile (99.99)")
    parser.add_argument("--batch", type=positive_int, default=4, help="images per batch (default 4)")
    parser.add_argument("--max-images", type=non_negative_int, default=0,
                        help="use at most this many images (0: all)")
    parser.add_argument("--output", "-o", type=Path, required=True, help="calibration cache to write")


def run(model, args) -> int:
    from zoo.vision.images import list_images
    refuse_overwrite({"--output": args.output}, {"--weights": args.weights})
    try:
        paths = list_images(args.images)
    except (FileNotFoundError, ValueError) as e:
        raise UserError(str(e)) from None
    paths = paths[:args.max_images] if args.max_images else paths
    backend = choose_backend(args.backend, args.device)
    started = time.perf_counter()
    if is_pipeline(model):
        cache = calibrate_pipeline(model, args, backend, paths)
    else:
        cache = calibrate_network(model, args, backend, paths)
    if not cache.num_images:
        raise UserError(f"{args.images}: none of the images could be read")
    cache.save(args.output)
    say(f"wrote {args.output}: {len(cache.scales)} tensor scales from {cache.num_images} images in "
        f"{time.perf_counter() - started:.1f} s")
    return 0


def calibrate_network(model, args, backend, paths) -> CalibrationCache:
    weights, config, _ = load_weights(model, args)
    say(f"calibrating {model.variant(config)} ({args.method}) on {len(paths)} images, {backend_label(backend)}")

    phases = ["ranges"] if args.method == "max" else ["ranges", "histograms"]
    passes = iter(phases)

    def batches():  # called once per pass over the images; the bar replaces the per-batch log lines
        phase = next(passes, "again")
        with Progress(len(paths), f"calibration {phase}", unit="img") as bar:
            for start in range(0, len(paths), args.batch):
                chunk = paths[start:start + args.batch]
                batch, _ = model.load_batch(chunk, config)
                if len(batch):
                    yield batch
                bar.update(len(chunk), note=chunk[-1].name)

    scales, count = quantization.calibrate(
        lambda b, precision: define_network(model, b, weights, config, precision), backend, batches,
        model.input_name, args.method, args.percentile, args.batch, log=lambda message: None)
    return CalibrationCache(model.name, model.variant(config), args.method, count, model.input_shape(config),
                            scales, percentile=recorded_percentile(args))


def calibrate_pipeline(model, args, backend, paths) -> CalibrationCache:
    """Stage by stage on what each sees in the pipeline (`calibration_batches`, from FP32 engines of every stage):
    one cache whose names are `<stage>/<tensor>`."""
    stages = model_stages(model, args)
    fp32 = {}
    for stage in stages:
        header, payload = build_stage(stage, backend, Precision("fp32"), args)
        fp32[stage.name] = StageRunner(header, backend.load(payload))
    images, _ = model.load_batch(paths, model.pipeline_config(stages, args))
    scales = {}
    for stage in stages:
        say(f"calibrating {model.name} stage {stage.name} ({args.method}) on {len(images)} images, "
            f"{backend_label(backend)}")
        found, _ = quantization.calibrate(
            lambda b, precision: define_network(stage.network, b, stage.weights, stage.config, precision), backend,
            lambda: model.calibration_batches(stage.name, fp32, images), stage.network.input_name, args.method,
            args.percentile, stage.batch[2], log=say)  # the stage's own batches (crops), up to its profile's max
        scales.update({f"{stage.name}/{name}": scale for name, scale in found.items()})
    return CalibrationCache(model.name, model.name, args.method, len(images), model.input_shape({}), scales,
                            percentile=recorded_percentile(args))


def recorded_percentile(args) -> float | None:
    """The percentile goes into the cache only when it chose the thresholds."""
    return args.percentile if args.method == "percentile" else None
