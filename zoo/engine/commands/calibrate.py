"""`calibrate`: INT8 activation scales over a folder of images, written to a readable cache."""
from __future__ import annotations

import time
from pathlib import Path

from .. import quantization
from ..backends import choose_backend
from ..calibration import CalibrationCache
from ..files import refuse_overwrite
from ..progress import Progress
from ..workflow import (UserError, add_common_flags, backend_label, bounded, define_network, load_weights,
                        non_negative_int, positive_int, say)

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
    weights, config, _ = load_weights(model, args)
    try:
        paths = list_images(args.images)
    except (FileNotFoundError, ValueError) as e:
        raise UserError(str(e)) from None
    paths = paths[:args.max_images] if args.max_images else paths
    backend = choose_backend(args.backend, args.device)
    say(f"calibrating {model.variant(config)} ({args.method}) on {len(paths)} images, {backend_label(backend)}")
    started = time.perf_counter()

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
    if not count:
        raise UserError(f"{args.images}: none of the images could be read")
    CalibrationCache(model.name, model.variant(config), args.method, count, model.input_shape(config),
                     scales).save(args.output)
    say(f"wrote {args.output}: {len(scales)} tensor scales from {count} images in "
        f"{time.perf_counter() - started:.1f} s")
    return 0
