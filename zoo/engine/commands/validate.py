"""`validate`: every layer of the network against the PyTorch reference module, one table row per layer."""
from __future__ import annotations

from pathlib import Path

import torch

from wts.weight_map import WeightMap

from .. import validate as validation
from ..backends import choose_backend
from ..model import load_state_into
from layers.precision import Precision
from ..quantization import as_input
from ..pipeline import Stage, is_pipeline
from ..engines import backend_label, build_engine, load_stages, make_precision, runner_for
from ..errors import say, UserError
from ..flags import add_common_flags, add_precision_flags, bounded, load_npy, positive_int
from ..networks import define_network, model_stages
from ..sensitivity import sensitivity

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
    """Each network of the model (a pipeline's stages in order) layer by layer, then a pipeline end to end."""
    backend = choose_backend(args.backend, args.device, run_on_onnx=False)
    pipeline = is_pipeline(model)
    if pipeline and (args.input or args.sensitivity or args.images):
        raise UserError(f"--input, --sensitivity and --images check one network; {model.name} is a pipeline of "
                        f"{len(model.stage_names)} (validate compares each on its own inputs, then the whole)")
    ok = True
    for stage in model_stages(model, args):
        network = stage.network
        precision = make_precision(network, args, stage.weights, stage.config, stage.name if pipeline else None)
        say(f"validating {model.name} ({network.variant(stage.config)}, {precision.mode}) against PyTorch FP32 on "
            f"the {backend_label(backend)}")
        if args.sensitivity:
            if precision.mode != "int8":
                raise UserError("--sensitivity needs --precision int8 and --calib")
            print(format_sensitivity(sensitivity(network, stage.weights, stage.config, precision.activation_scales,
                                                 args)))
        x = load_npy(args.input) if args.input else network.sample_input(stage.config, args.batch, args.seed)
        min_cosine = None if precision.mode == "fp32" else args.min_cosine or MIN_COSINE[precision.mode]
        rows = validate_stage(stage, backend, precision, x, args.tolerance, min_cosine)
        criterion = f"tolerance {args.tolerance:g}" if min_cosine is None else f"cosine >= {min_cosine:g}"
        if pipeline:
            print(f"== {stage.name}, input {list(x.shape)}")
        print(validation.format_table(rows, criterion))
        ok &= all(r.ok for r in rows)
        if args.images:
            print(agreement(network, backend, stage.weights, stage.config, precision, args))
    if pipeline:  # the engines as build makes them, joined by the pipeline's glue, against its own reference
        header, payload, _ = build_engine(model, args, backend)
        text, passed = model.validate_end_to_end(load_stages(header, payload, backend), header.config, args)
        print(text)
        ok &= passed
    return 0 if ok else 1


def validate_stage(stage: Stage, backend, precision: Precision, x, tolerance: float,
                   min_cosine: float | None) -> list:
    """One network on input `x`: a row per named tensor against the reference module's forward hooks."""
    network, config = stage.network, stage.config
    reference = load_state_into(network.reference_module(config), WeightMap(stage.weights.arrays(),
                                                                            stage.weights.source))
    expected = validation.reference_outputs(reference, torch.from_numpy(x))
    net, outputs = define_network(network, backend, stage.weights, config, precision)
    compared = validation.mark_comparable(net, set(expected))
    dynamic = any(d < 0 for d in network.input_shape(config))  # e.g. a fully convolutional height and width
    runner = runner_for(backend, net, network.input_name, len(x), x.shape if dynamic else None)
    got = runner.run({network.input_name: as_input(x, precision.mode)})
    for i, name in enumerate(outputs):  # rows that may come in another order (end-to-end heads) face the reference's
        if f"__output__{i or ''}" in expected:
            got[name] = network.aligned_output(config, i, torch.as_tensor(got[name]), expected[f"__output__{i or ''}"])
    rows = [validation.compare(name, got[name], expected[name], tolerance, min_cosine) for name in compared]
    rows += [validation.compare(f"output:{name}", got[name], expected[f"__output__{i or ''}"], tolerance,
                                min_cosine) for i, name in enumerate(outputs) if f"__output__{i or ''}" in expected]
    return rows


def format_sensitivity(ranking) -> str:
    lines = ["INT8 sensitivity: output SNR with only this layer quantized (worst first)",
             f"{'layer':<28} {'SNR dB':>8}"]
    lines += [f"{layer:<28} {snr:8.2f}" for layer, snr in ranking[:15]]
    if len(ranking) > 15:
        lines.append(f"... {len(ranking) - 15} more, all above {ranking[15][1]:.2f} dB")
    return "\n".join(lines)


def agreement(model, backend, weights: WeightMap, config: dict, precision: Precision, args) -> str:
    """How many FP32 results (detections, top-1 classes, pixel classes or depths: the model's `agreement_terms`)
    the low-precision network reproduces over a folder."""
    from zoo.vision.images import list_images
    if precision.mode == "fp32":
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
        counts = model.agreement(outs["fp32"], outs["low"], config)
        if counts is None:
            raise UserError("--images compares fp16/int8 detections with FP32; it needs a detector and --precision")
        m, t = counts
        matched, total = matched + m, total + t
    share = f"{100 * matched / total:.1f}%" if total else "n/a"
    counted, criterion = model.agreement_terms(config)
    return (f"agreement over {len(paths)} images: {precision.mode} reproduces {matched} of {total} FP32 "
            f"{counted} ({share}; {criterion})")
