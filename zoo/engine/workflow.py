"""What every command shares: reading weights, defining a model's network, building and opening engines.

The command modules in `zoo.engine.commands` are thin: they parse their flags and call these functions, so that
build, infer, validate, calibrate, bench, export and serve all go through one definition of each step.
"""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np
import torch

from wts.weight_map import WeightMap

from . import quantization
from .api import trt
from .backends import BuildOptions, ReferenceBackend, choose_backend
from .engine_file import EngineHeader, read_engine
from .model import ZooModel, load_state_into, state_dict_arrays
from .precision import PRECISIONS, Precision
from .quantization import load_cache

REFERENCE_NOTE = ("reference backend (CPU, PyTorch): a development and validation executor, not a production path; "
                  "use a machine with an NVIDIA GPU and TensorRT for deployment")


class UserError(Exception):
    """A mistake in the command line or its files: reported in one line, exit code 2."""


def say(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


# ----------------------------------------------------------------------------------------------------------------
# flags shared by several commands


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


def add_common_flags(parser: argparse.ArgumentParser, model: ZooModel, weights: bool = True) -> None:
    if weights:
        parser.add_argument("--weights", "-w", type=Path,
                            help="a .wts file or a PyTorch checkpoint (.pt/.pth: state_dict, pickled model, "
                                 "TorchScript); without it, seeded random weights are used")
        parser.add_argument("--seed", type=int, default=0, help="seed of the random weights (default 0)")
        model.add_arguments(parser)
    parser.add_argument("--backend", choices=("auto", "reference", "tensorrt"), default="auto",
                        help="auto: TensorRT where a GPU and TensorRT exist, else the CPU reference backend")
    parser.add_argument("--verbose", "-v", action="store_true", help="show tracebacks on errors")


def add_precision_flags(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--precision", choices=PRECISIONS, default="fp32",
                        help="fp32; fp16 (FP16 input, weights, activations; FP32 outputs); int8 (fp16 plus Q/DQ on "
                             "every convolution and matrix multiply, scales from --calib) (default fp32)")
    parser.add_argument("--calib", type=Path, help="calibration cache written by `calibrate` (int8)")
    parser.add_argument("--keep-fp16", type=lambda t: [n for n in t.split(",") if n], default=[],
                        metavar="NAME,...", help="int8: layers (e.g. model.24.m.0) left unquantized, in FP16")
    parser.add_argument("--auto-keep", type=int, default=0, metavar="K",
                        help="int8: leave the K layers whose quantization costs the most unquantized (ranked by "
                             "a sensitivity pass on the reference backend)")


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
    weights.meta = checkpoint.meta  # what a pickled model recorded about itself (yaml, activations), or None
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
    say(f"building {model.name} ({model.variant(config)}, {precision.mode}) on the {backend_label(backend)}")
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
        ranking = sensitivity(model, weights, config, scales, args)
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


def sensitivity(model: ZooModel, weights: WeightMap, config: dict, scales: dict, args):
    """Layers ranked by the output SNR when each alone is quantized (worst first)."""
    x = model.sample_input(config, 1, getattr(args, "seed", 0))
    net, outputs = define_network(model, ReferenceBackend(), weights, config, Precision("fp32"))
    reference = ReferenceBackend().runner_for(net).run({model.input_name: x})[outputs[0]]
    return quantization.sensitivity(lambda backend, precision: define_network(model, backend, weights, config,
                                                                              precision),
                                    scales, x, model.input_name, reference, log=say)


def backend_label(backend) -> str:
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


def engine_runner(model: ZooModel, args):
    """(header, runner) from --engine, or from the weights built in memory."""
    if getattr(args, "engine", None):
        header, runner, backend = open_engine(model, args.engine)
        say(f"engine {args.engine}: {header.variant} on the {backend_label(backend)}")
        return header, runner
    header, payload, backend = build_engine(model, args)
    return header, backend.load(payload)


def runner_for(backend, net, input_name: str, batch: int):
    """A runner for a network just defined: the reference backend runs it as is, TensorRT builds it first."""
    if isinstance(backend, ReferenceBackend):
        return backend.runner_for(net)
    return backend.load(backend.build(net, BuildOptions(input_name, (batch,) * 3, allow_tf32=False)))


def reference_for(model: ZooModel, args, device: str) -> torch.nn.Module:
    """The PyTorch reference module with the weights of `args`, on `device`."""
    weights, config, module = load_weights(model, args)
    module = module if module is not None else load_state_into(model.reference_module(config), weights)
    return module.eval().to(device)


def median_ms(fn, warmup: int, iterations: int) -> float:
    """Median milliseconds per call."""
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(iterations):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return 1000 * float(np.median(times))
