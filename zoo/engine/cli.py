"""The command line every model shares: `python -m zoo.<model> build|infer|validate|bench`.

A model's `__main__` is one line, `raise SystemExit(main(MyModel()))`. Exit codes: 0 done, 1 validation over
tolerance, 2 a user error (one line on stderr; the traceback only with --verbose).
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np
import torch

from wts.weight_map import WeightMap

from . import quantization
from .api import trt
from . import validate as validation
from .backends import BuildOptions, ReferenceBackend, choose_backend
from .files import write_text_atomic
from .engine_file import EngineHeader, read_engine, write_engine
from .calibration import CalibrationCache
from .model import ZooModel, load_state_into, state_dict_arrays
from .precision import PRECISIONS, Precision
from .quantization import as_input, load_cache

REFERENCE_NOTE = ("reference backend (CPU, PyTorch): a development and validation executor, not a production path; "
                  "use a machine with an NVIDIA GPU and TensorRT for deployment")


class UserError(Exception):
    """A mistake in the command line or its files: reported in one line, exit code 2."""


def say(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


# ----------------------------------------------------------------------------------------------------------------
# arguments


def parse_batch(text: str) -> tuple[int, int, int]:
    """'8' -> (8, 8, 8); '1:8:16' -> min, opt, max."""
    try:
        parts = [int(p) for p in text.split(":")]
    except ValueError:
        raise argparse.ArgumentTypeError(f"batch {text!r} is not N or MIN:OPT:MAX") from None
    if len(parts) == 1:
        parts *= 3
    if len(parts) != 3 or not 1 <= parts[0] <= parts[1] <= parts[2]:
        raise argparse.ArgumentTypeError(f"batch {text!r} must be N or MIN:OPT:MAX with 1 <= MIN <= OPT <= MAX")
    return tuple(parts)


def _common(parser: argparse.ArgumentParser, model: ZooModel, weights: bool = True) -> None:
    if weights:
        parser.add_argument("--weights", "-w", type=Path,
                            help="a .wts file or a PyTorch checkpoint (.pt/.pth: state_dict, pickled model, "
                                 "TorchScript); without it, seeded random weights are used")
        parser.add_argument("--seed", type=int, default=0, help="seed of the random weights (default 0)")
        model.add_arguments(parser)
    parser.add_argument("--backend", choices=("auto", "reference", "tensorrt"), default="auto",
                        help="auto: TensorRT where a GPU and TensorRT exist, else the CPU reference backend")
    parser.add_argument("--verbose", "-v", action="store_true", help="show tracebacks on errors")


def _precision_flags(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--precision", choices=PRECISIONS, default="fp32",
                        help="fp32; fp16 (FP16 input, weights, activations; FP32 outputs); int8 (fp16 plus Q/DQ on "
                             "every convolution and matrix multiply, scales from --calib) (default fp32)")
    parser.add_argument("--calib", type=Path, help="calibration cache written by `calibrate` (int8)")
    parser.add_argument("--keep-fp16", type=lambda t: [n for n in t.split(",") if n], default=[],
                        metavar="NAME,...", help="int8: layers (e.g. model.24.m.0) left unquantized, in FP16")
    parser.add_argument("--auto-keep", type=int, default=0, metavar="K",
                        help="int8: leave the K layers whose quantization costs the most unquantized (ranked by "
                             "a sensitivity pass on the reference backend)")


def make_parser(model: ZooModel) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog=f"python -m zoo.{model.name}", description=model.summary)
    commands = parser.add_subparsers(dest="command", required=True)

    build = commands.add_parser("build", help="build and serialize an engine from weights")
    _common(build, model)
    build.add_argument("--output", "-o", type=Path, required=True, help="engine file to write")
    build.add_argument("--batch", type=parse_batch, default=(1, 1, 8),
                       help="batch range of the optimization profile, N or MIN:OPT:MAX (default 1:1:8)")
    build.add_argument("--workspace", type=float, default=2.0, help="TensorRT workspace limit in GiB (default 2)")
    build.add_argument("--timing-cache", type=Path, help="TensorRT timing cache file, read and updated")
    _precision_flags(build)

    calibrate = commands.add_parser("calibrate", help="INT8 calibration over a folder of images -> cache file")
    _common(calibrate, model)
    calibrate.add_argument("--images", type=Path, required=True, help="folder of calibration images")
    calibrate.add_argument("--method", choices=("entropy", "percentile", "max"), default="percentile",
                           help="threshold per tensor: percentile (default; measured best on the zoo's models), "
                                "entropy (TensorRT's KL search, which clips SiLU tails hard), max")
    calibrate.add_argument("--percentile", type=float, default=99.99, help="for --method percentile (99.99)")
    calibrate.add_argument("--batch", type=int, default=4, help="images per batch (default 4)")
    calibrate.add_argument("--max-images", type=int, default=0, help="use at most this many images (0: all)")
    calibrate.add_argument("--output", "-o", type=Path, required=True, help="calibration cache to write")

    infer = commands.add_parser("infer", help="run an engine (or weights) on images, a folder or a .npy tensor")
    _common(infer, model)
    infer.add_argument("--engine", "-e", type=Path, help="engine built by `build` (otherwise built in memory)")
    infer.add_argument("--source", "-s", type=Path, required=True, help="image file, folder of images, or .npy")
    infer.add_argument("--out", type=Path, help="folder for predictions.jsonl (and annotated images)")
    infer.add_argument("--batch", type=int, default=0, help="images per batch (default: the engine's max batch)")
    model.add_infer_arguments(infer)

    check = commands.add_parser("validate", help="compare every layer with the PyTorch reference")
    _common(check, model)
    check.add_argument("--tolerance", type=float, default=1e-4,
                       help="max |net - ref| allowed, relative to max(1, max|ref|) per layer (default 1e-4)")
    check.add_argument("--batch", type=int, default=1, help="batch size of the random input (default 1)")
    check.add_argument("--input", type=Path, help="a .npy input instead of the seeded random one")
    _precision_flags(check)
    check.add_argument("--min-cosine", type=float,
                       help="fp16/int8: a layer passes when its cosine to FP32 is at least this (default 0.999 "
                            "fp16, 0.98 int8)")
    check.add_argument("--images", type=Path,
                       help="fp16/int8 detectors: count the FP32 detections reproduced over this image folder")
    check.add_argument("--sensitivity", action="store_true",
                       help="int8: rank layers by the output error their quantization alone adds")

    bench = commands.add_parser("bench", help="time the network (and, with --compare-torch, PyTorch eager)")
    _common(bench, model)
    bench.add_argument("--engine", "-e", type=Path, help="engine to time (otherwise built in memory)")
    bench.add_argument("--batch", type=int, default=1, help="batch size (default 1)")
    bench.add_argument("--iterations", type=int, default=20, help="timed runs (default 20)")
    bench.add_argument("--warmup", type=int, default=3, help="untimed runs first (default 3)")
    bench.add_argument("--compare-torch", action="store_true",
                       help="also time the PyTorch reference eagerly on the same input, same run")
    bench.add_argument("--source", type=Path,
                       help="detectors: time each stage (pre-process, network, NMS) over this image folder")
    return parser


# ----------------------------------------------------------------------------------------------------------------
# weights, networks, engines


def load_weights(model: ZooModel, args) -> tuple[WeightMap, dict, torch.nn.Module | None]:
    """(weights, config, random module or None). Without --weights, a seeded random reference module."""
    if args.weights is None:
        module = model.random_module(args, args.seed)
        weights = WeightMap(state_dict_arrays(module), f"random {model.name} weights (seed {args.seed})")
        return weights, model.config_from_weights(weights, args), module
    from .checkpoint import load_state_dict
    say(f"loading weights {args.weights} ...")
    checkpoint = load_state_dict(args.weights)
    weights = WeightMap(checkpoint.tensors, str(args.weights))
    config = model.config_from_weights(weights, args)
    if checkpoint.names is not None:
        names = checkpoint.names
        config["class_names"] = [names[i] for i in sorted(names)] if isinstance(names, dict) else list(names)
    return weights, config, None


def define_network(model: ZooModel, backend, weights: WeightMap, config: dict, precision: Precision | None = None):
    """The model's network on `backend` at `precision`; outputs are always FP32. Returns (network, output names)."""
    import layers
    precision = precision or Precision()
    weights.precision = precision
    weights.reset_usage()
    net = backend.create_network()
    x = net.add_input(model.input_name, precision.dtype, (-1, *model.input_shape(config)))
    outputs = []
    for tensor in model.define(net, weights, config, x):
        if tensor.dtype != trt.float32:  # the consumer gets FP32; the FP16 tensor keeps a derived name
            name = tensor.name
            tensor.name = f"{name}/{precision.mode}"
            tensor = layers.cast(net, tensor, trt.float32, name)
        net.mark_output(tensor)
        outputs.append(tensor)
    unused = weights.unused()
    if unused:
        raise UserError(f"{weights.source}: {len(unused)} weights are not used by {model.name} "
                        f"({model.variant(config)}): {unused[:5]}; are these weights of another architecture?")
    return net, [t.name for t in outputs]


def build_engine(model: ZooModel, args, backend=None) -> tuple[EngineHeader, bytes, object]:
    weights, config, _ = load_weights(model, args)
    backend = backend or choose_backend(args.backend)
    precision = make_precision(model, args, weights, config)
    say(f"building {model.name} ({model.variant(config)}, {precision.mode}) on the {_backend_label(backend)}")
    started = time.perf_counter()
    net, outputs = define_network(model, backend, weights, config, precision)
    batch = getattr(args, "batch", (1, 1, 8))
    batch = batch if isinstance(batch, tuple) else (1, max(1, batch), max(1, batch))
    options = BuildOptions(model.input_name, batch, int(getattr(args, "workspace", 2.0) * (1 << 30)),
                           str(args.timing_cache) if getattr(args, "timing_cache", None) else None)
    payload = backend.build(net, options)
    say(f"built in {time.perf_counter() - started:.1f} s")
    header = EngineHeader(model=model.name, variant=model.variant(config), backend=backend.name,
                          input_name=model.input_name, input_shape=[-1, *model.input_shape(config)],
                          batch=list(batch), precision=precision.mode, outputs=outputs, config=config,
                          **backend.describe())
    return header, payload, backend


def make_precision(model: ZooModel, args, weights: WeightMap, config: dict) -> Precision:
    mode = getattr(args, "precision", "fp32")
    if mode != "int8":
        if getattr(args, "calib", None) or getattr(args, "keep_fp16", None) or getattr(args, "auto_keep", 0):
            raise UserError("--calib, --keep-fp16 and --auto-keep apply to --precision int8 only")
        return Precision(mode)
    if not args.calib:
        raise UserError("--precision int8 needs --calib CACHE (run `calibrate` first)")
    scales = load_cache(args.calib, model.name, model.variant(config)).scales
    keep = set(args.keep_fp16)
    if args.auto_keep:
        ranking = _sensitivity(model, weights, config, scales, args)
        keep |= {layer for layer, _ in ranking[:args.auto_keep]}
        say(f"--auto-keep {args.auto_keep}: keeping in FP16 {sorted(keep)}")
    if keep:
        _check_layer_names(model, weights, config, keep)
    return Precision("int8", scales, frozenset(keep))


def _check_layer_names(model: ZooModel, weights: WeightMap, config: dict, keep: set[str]) -> None:
    probe = Precision("fp32")
    define_network(model, ReferenceBackend(), weights, config, probe)
    unknown = keep - set(probe.quantizable_layers())
    if unknown:
        raise UserError(f"--keep-fp16: {sorted(unknown)} are not quantizable layers of {model.variant(config)} "
                        f"(e.g. {probe.quantizable_layers()[:3]})")


def _sensitivity(model: ZooModel, weights: WeightMap, config: dict, scales: dict, args):
    x = model.sample_input(config, 1, getattr(args, "seed", 0))
    net, outputs = define_network(model, ReferenceBackend(), weights, config, Precision("fp32"))
    reference = ReferenceBackend().runner_for(net).run({model.input_name: x})[outputs[0]]
    return quantization.sensitivity(lambda backend, precision: define_network(model, backend, weights, config,
                                                                              precision),
                                    scales, x, model.input_name, reference, log=say)


def _backend_label(backend) -> str:
    return REFERENCE_NOTE if isinstance(backend, ReferenceBackend) else "TensorRT backend"


def open_engine(model: ZooModel, path: Path):
    header, payload = read_engine(path, expect_model=model.name)
    if header.backend == "tensorrt":
        backend = choose_backend("tensorrt")  # raises with the reason when no GPU/TensorRT is here
        here = backend.describe()
        if header.tensorrt_version != here["tensorrt_version"] or header.gpu != here["gpu"]:
            raise UserError(f"{path}: built with TensorRT {header.tensorrt_version} for {header.gpu}; this machine "
                            f"has TensorRT {here['tensorrt_version']} on {here['gpu']}: rebuild the engine here")
    else:
        backend = ReferenceBackend()
    return header, backend.load(payload), backend


# ----------------------------------------------------------------------------------------------------------------
# commands


def cmd_build(model: ZooModel, args) -> int:
    header, payload, _ = build_engine(model, args)
    write_engine(args.output, header, payload)
    say(f"wrote {args.output} ({len(payload) / 1e6:.1f} MB, {header.backend} backend, batch "
        f"{':'.join(map(str, header.batch))}, outputs {header.outputs})")
    return 0


def _runner(model: ZooModel, args):
    if getattr(args, "engine", None):
        header, runner, backend = open_engine(model, args.engine)
        say(f"engine {args.engine}: {header.variant} on the {_backend_label(backend)}")
        return header, runner
    header, payload, backend = build_engine(model, args)
    return header, backend.load(payload)


def cmd_infer(model: ZooModel, args) -> int:
    from zoo.vision.images import list_images
    header, runner = _runner(model, args)
    config = header.config
    out_dir = args.out
    if out_dir:
        out_dir.mkdir(parents=True, exist_ok=True)
    records: list[dict] = []
    if args.source.suffix == ".npy":
        batch = np.load(args.source, allow_pickle=False).astype(np.float32)
        outputs = runner.run({header.input_name: as_input(batch, header.precision)})
        records = model.records(outputs, [None] * len(batch), config, args)
    else:
        try:
            paths = list_images(args.source)
        except (FileNotFoundError, ValueError) as e:
            raise UserError(str(e)) from None
        size = args.batch or header.batch[2]
        for start in range(0, len(paths), size):
            chunk = paths[start:start + size]
            say(f"[{min(start + size, len(paths))}/{len(paths)}] {chunk[0].name} ...")
            batch, contexts = model.load_batch(chunk, config, runner.device)
            if not len(batch):
                records += [c for c in contexts if isinstance(c, dict) and "error" in c]
                continue
            outputs = runner.run({header.input_name: as_input(batch, header.precision)})
            records += model.records(outputs, contexts, config, args)
    if out_dir:  # the file is for programs; the terminal gets one line per item
        _write_jsonl(out_dir / "predictions.jsonl", records)
        for record in records:
            say(_summary(record))
        say(f"wrote {out_dir / 'predictions.jsonl'}")
    else:
        for record in records:
            print(json.dumps(record))
    return 0


def _summary(record: dict) -> str:
    name = record.get("file", f"item {record.get('index', '')}")
    if "error" in record:
        return f"{name}: {record['error']}"
    if "detections" in record:
        return f"{name}: {len(record['detections'])} detections"
    if "top" in record:
        best = record["top"][0]
        return f"{name}: class {best.get('class_name', best['class_id'])} ({best['score']:.3f})"
    return f"{name}: {record}"


def _write_jsonl(path: Path, records: list[dict]) -> None:
    write_text_atomic(path, "".join(json.dumps(r) + "\n" for r in records))


def cmd_calibrate(model: ZooModel, args) -> int:
    from zoo.vision.images import list_images
    weights, config, _ = load_weights(model, args)
    try:
        paths = list_images(args.images)
    except (FileNotFoundError, ValueError) as e:
        raise UserError(str(e)) from None
    paths = paths[:args.max_images] if args.max_images else paths
    backend = choose_backend(args.backend)
    say(f"calibrating {model.variant(config)} ({args.method}) on {len(paths)} images, {_backend_label(backend)}")
    started = time.perf_counter()

    def batches():
        for start in range(0, len(paths), args.batch):
            batch, _ = model.load_batch(paths[start:start + args.batch], config)
            if len(batch):
                yield batch

    scales, count = quantization.calibrate(
        lambda b, precision: define_network(model, b, weights, config, precision), backend, batches,
        model.input_name, args.method, args.percentile, args.batch, log=say)
    if not count:
        raise UserError(f"{args.images}: none of the images could be read")
    CalibrationCache(model.name, model.variant(config), args.method, count, model.input_shape(config),
                     scales).save(args.output)
    say(f"wrote {args.output}: {len(scales)} tensor scales from {count} images in "
        f"{time.perf_counter() - started:.1f} s")
    return 0


MIN_COSINE = {"fp16": 0.999, "int8": 0.98}


def cmd_validate(model: ZooModel, args) -> int:
    weights, config, _ = load_weights(model, args)
    reference = load_state_into(model.reference_module(config), WeightMap(weights.arrays(), weights.source))
    x = np.load(args.input, allow_pickle=False).astype(np.float32) if args.input else \
        model.sample_input(config, args.batch, args.seed)
    expected = validation.reference_outputs(reference, torch.from_numpy(x))
    backend = choose_backend(args.backend)
    precision = make_precision(model, args, weights, config)
    say(f"validating {model.name} ({model.variant(config)}, {precision.mode}) against PyTorch FP32 on the "
        f"{_backend_label(backend)}")
    if args.sensitivity:
        if precision.mode != "int8":
            raise UserError("--sensitivity needs --precision int8 and --calib")
        print(_format_sensitivity(_sensitivity(model, weights, config, precision.activation_scales, args)))
    net, outputs = define_network(model, backend, weights, config, precision)
    compared = validation.mark_comparable(net, set(expected))
    got = _runner_for(backend, net, model.input_name, len(x)).run({model.input_name: as_input(x, precision.mode)})
    min_cosine = None if precision.mode == "fp32" else args.min_cosine or MIN_COSINE[precision.mode]
    rows = [validation.compare(name, got[name], expected[name], args.tolerance, min_cosine) for name in compared]
    rows += [validation.compare(f"output:{name}", got[name], expected["__output__"], args.tolerance, min_cosine)
             for name in outputs[:1]]
    criterion = f"tolerance {args.tolerance:g}" if min_cosine is None else f"cosine >= {min_cosine:g}"
    print(validation.format_table(rows, criterion))
    if args.images:
        print(_agreement(model, backend, weights, config, precision, args))
    return 0 if all(r.ok for r in rows) else 1


def _runner_for(backend, net, input_name: str, batch: int):
    if isinstance(backend, ReferenceBackend):
        return backend.runner_for(net)
    return backend.load(backend.build(net, BuildOptions(input_name, (batch,) * 3, allow_tf32=False)))


def _format_sensitivity(ranking) -> str:
    lines = ["INT8 sensitivity: output SNR with only this layer quantized (worst first)",
             f"{'layer':<28} {'SNR dB':>8}"]
    lines += [f"{layer:<28} {snr:8.2f}" for layer, snr in ranking[:15]]
    if len(ranking) > 15:
        lines.append(f"... {len(ranking) - 15} more, all above {ranking[15][1]:.2f} dB")
    return "\n".join(lines)


def _agreement(model: ZooModel, backend, weights: WeightMap, config: dict, precision: Precision, args) -> str:
    """How many FP32 detections the low-precision network reproduces over a folder (IoU >= 0.5, same class)."""
    from zoo.vision.images import list_images
    if not hasattr(model, "agreement") or precision.mode == "fp32":
        raise UserError("--images compares fp16/int8 detections with FP32; it needs a detector and --precision")
    runners = {}
    for mode, p in (("fp32", Precision("fp32")), ("low", precision)):
        net, outputs = define_network(model, backend, weights, config, p)
        runners[mode] = (_runner_for(backend, net, model.input_name, args.batch), outputs[0], p.mode)
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


def _reference_for(model: ZooModel, args, device: str) -> torch.nn.Module:
    weights, config, module = load_weights(model, args)
    module = module if module is not None else load_state_into(model.reference_module(config), weights)
    return module.eval().to(device)


def cmd_bench(model: ZooModel, args) -> int:
    header, runner = _runner(model, args)
    if args.source:
        return bench_pipeline(model, header, runner, args)
    x = model.sample_input(header.config, args.batch, args.seed)
    feed = {header.input_name: as_input(x, header.precision)}
    network_ms = _time(lambda: runner.run(feed), args.warmup, args.iterations)
    label = "reference backend" if header.backend == "reference" else "TensorRT"
    print(f"{model.name} {header.variant} batch {args.batch}: {label} {network_ms:.2f} ms/iter, "
          f"{1000 * args.batch / network_ms:.1f} items/s")
    if args.compare_torch:
        reference = _reference_for(model, args, "cpu")
        tensor = torch.from_numpy(x)
        with torch.inference_mode():
            torch_ms = _time(lambda: reference(tensor), args.warmup, args.iterations)
        print(f"{model.name} {header.variant} batch {args.batch}: PyTorch eager (CPU) {torch_ms:.2f} ms/iter; "
              f"ratio {label} / PyTorch = {network_ms / torch_ms:.2f}")
    return 0


def bench_pipeline(model: ZooModel, header: EngineHeader, runner, args) -> int:
    """Per-stage times over a folder, for the engine and (with --compare-torch) the PyTorch reference."""
    from zoo.vision.images import list_images, read_image
    if not hasattr(model, "bench_stages"):
        raise UserError(f"{model.name} has no per-stage benchmark; run bench without --source")
    images = [im for im in (read_image(p) for p in list_images(args.source)) if im is not None]
    device = runner.device
    label = "reference backend" if header.backend == "reference" else "TensorRT"
    rows = {label: model.bench_stages(lambda b: runner.run({header.input_name: as_input(b, header.precision)}),
                                      images, header.config, args, device)}
    if args.compare_torch:
        reference = _reference_for(model, args, device)
        output = header.outputs[0]

        def eager(batch):
            with torch.inference_mode():
                return {output: reference(torch.as_tensor(batch, device=device))}

        rows[f"PyTorch eager ({device})"] = model.bench_stages(eager, images, header.config, args, device)
    print(f"{model.name} {header.variant}, {len(images)} images, batch {args.batch}: ms per image")
    print(f"{'':24} {'preprocess':>11} {'network':>9} {'nms':>8} {'total':>8} {'images/s':>9}")
    for name, t in rows.items():
        print(f"{name:24} {t['preprocess']:11.2f} {t['network']:9.2f} {t['nms']:8.2f} {t['total']:8.2f} "
              f"{1000 / t['total']:9.1f}")
    if len(rows) == 2:
        mine, theirs = rows.values()
        print("ratio (" + label + " / PyTorch): " + ", ".join(f"{k} {mine[k] / theirs[k]:.2f}" for k in mine))
    return 0


def _time(fn, warmup: int, iterations: int) -> float:
    """Median milliseconds per call."""
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(iterations):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return 1000 * float(np.median(times))


COMMANDS = {"build": cmd_build, "calibrate": cmd_calibrate, "infer": cmd_infer, "validate": cmd_validate,
            "bench": cmd_bench}


def main(model: ZooModel, argv: list[str] | None = None) -> int:
    args = make_parser(model).parse_args(argv)
    try:
        return COMMANDS[args.command](model, args)
    except KeyboardInterrupt:
        say("interrupted")
        return 130
    except Exception as e:  # one clear line; the traceback only on request
        if args.verbose:
            raise
        say(f"zoo.{model.name} {args.command}: error: {e}")
        return 2
