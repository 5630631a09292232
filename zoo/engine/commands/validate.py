"""`validate`: every layer of the network against the PyTorch reference module, one table row per layer."""
from __future__ import annotations

from pathlib import Path

import torch

from wts.weight_map import WeightMap

from .. import validate as validation
from ..backends import choose_backend
from ..model import load_state_into
from ..precision import Precision
from ..quantization import as_input
from ..workflow import (UserError, add_common_flags, add_precision_flags, backend_label, bounded, define_network,
                        load_npy, load_weights, make_precision, positive_int, runner_for, say, sensitivity)

HELP = "compare every layer with the PyTorch reference"
MIN_COSINE = {"fp16": 0.999, "int8": 0.98}


def add_arguments(parser, model) -> None:
    add_common_flags(parser, model)
    parser.add_argument("--tolerance", type=bounded(float, 0), default=1e-4,
                        help="max |net - ref| allowed, relative to max(1, max|ref|) per layer (default 1e-4)")
    parser.add_argument("--batch", type=positive_int, default=1, help="batch size of the random input (default 1)")
    parser.add_argument("--input", type=Path, help="a .npy input instead of the seeded random one")
    add_precision_flags(parser)
    parser.add_argument("--min-cosine", type=bounded(float, -1, 1),
                        help="fp16/int8: a layer passes when its cosine to FP32 is at least this (default 0.999 "
                             "fp16, 0.98 int8)")
    parser.add_argument("--images", type=Path,
                        help="fp16/int8 detectors: count the FP32 detections reproduced over this image folder")
    parser.add_argument("--sensitivity", action="store_true",
                        help="int8: rank layers by the output error their quantization alone adds")


def run(model, args) -> int:
    weights, config, _ = load_weights(model, args)
    reference = load_state_into(model.reference_module(config), WeightMap(weights.arrays(), weights.source))
    x = load_npy(args.input) if args.input else model.sample_input(config, args.batch, args.seed)
    expected = validation.reference_outputs(reference, torch.from_numpy(x))
    backend = choose_backend(args.backend, args.device, run_on_onnx=False)
    precision = make_precision(model, args, weights, config)
    say(f"validating {model.name} ({model.variant(config)}, {precision.mode}) against PyTorch FP32 on the "
        f"{backend_label(backend)}")
    if args.sensitivity:
        if precision.mode != "int8":
            raise UserError("--sensitivity needs --precision int8 and --calib")
        print(format_sensitivity(sensitivity(model, weights, config, precision.activation_scales, args)))
    net, outputs = define_network(model, backend, weights, config, precision)
    compared = validation.mark_comparable(net, set(expected))
    got = runner_for(backend, net, model.input_name, len(x)).run({model.input_name: as_input(x, precision.mode)})
    min_cosine = None if precision.mode == "fp32" else args.min_cosine or MIN_COSINE[precision.mode]
    rows = [validation.compare(name, got[name], expected[name], args.tolerance, min_cosine) for name in compared]
    rows += [validation.compare(f"output:{name}", got[name], expected[f"__output__{i or ''}"], args.tolerance,
                                min_cosine) for i, name in enumerate(outputs) if f"__output__{i or ''}" in expected]
    criterion = f"tolerance {args.tolerance:g}" if min_cosine is None else f"cosine >= {min_cosine:g}"
    print(validation.format_table(rows, criterion))
    if args.images:
        print(agreement(model, backend, weights, config, precision, args))
    return 0 if all(r.ok for r in rows) else 1


def format_sensitivity(ranking) -> str:
    lines = ["INT8 sensitivity: output SNR with only this layer quantized (worst first)",
             f"{'layer':<28} {'SNR dB':>8}"]
    lines += [f"{layer:<28} {snr:8.2f}" for layer, snr in ranking[:15]]
    if len(ranking) > 15:
        lines.append(f"... {len(ranking) - 15} more, all above {ranking[15][1]:.2f} dB")
    return "\n".join(lines)


def agreement(model, backend, weights: WeightMap, config: dict, precision: Precision, args) -> str:
    """How many FP32 detections the low-precision network reproduces over a folder (IoU >= 0.5, same class)."""
    from zoo.vision.images import list_images
    if not hasattr(model, "agreement") or precision.mode == "fp32":
        raise UserError("--images compares fp16/int8 detections with FP32; it needs a detector and --precision")
    runners = {}
    for mode, p in (("fp32", Precision("fp32")), ("low", precision)):
        net, outputs = define_network(model, backend, weights, config, p)
        runners[mode] = (runner_for(backend, net, model.input_name, args.batch), outputs[0], p.mode)
    matched = total = 0
    paths = list_images(args.images)
    for start in range(0, len(paths), args.batch):
        batch, _ = model.load_batch(paths[start:start + args.batch], config)
        if not len(batch):
            continue
        outs = {mode: {name: runner.run({model.input_name: as_input(batch, m)})[name]}
                for mode, (runner, name, m) in runners.items()}
        m, t = model.agreement(outs["fp32"], outs["low"], config)
        matched, total = matched + m, total + t
    share = f"{100 * matched / total:.1f}%" if total else "n/a"
    return (f"detection agreement over {len(paths)} images: {precision.mode} reproduces {matched} of {total} FP32 "
            f"detections ({share}; IoU >= 0.5, same class)")
