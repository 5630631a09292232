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


def cut(text: str, limit: int = 200) -> str:
    """Long values (a 1 MB key, a huge flag value) are cut in messages."""
    text = str(text)
    return text if len(text) <= limit else f"{text[:limit]}...({len(text)} characters)"


# ----------------------------------------------------------------------------------------------------------------
# flag types: every value range-checked, one line naming the value and the range (argparse adds the flag)


def bounded(kind=float, lo=None, hi=None, *, lo_open: bool = False, hi_open: bool = False):
    """An argparse `type` that parses `kind` (int or float) and checks lo <= value <= hi (< with *_open).

        parser.add_argument("--conf", type=bounded(float, 0, 1))      # --conf 2: "2 is not in [0, 1]"

    NaN and infinities are refused for floats. The error is one line; argparse prefixes it with the flag.
    """
    left, right = "(" if lo_open else "[", ")" if hi_open else "]"
    if lo is not None and hi is not None:
        allowed = f"{left}{lo:g}, {hi:g}{right}"
    elif lo is not None:
        allowed = f"{'>' if lo_open else '>='} {lo:g}"
    else:
        allowed = f"{'<' if hi_open else '<='} {hi:g}" if hi is not None else "any value"

    def parse(text: str):
        try:
            value = kind(text)
        except (TypeError, ValueError):
            raise argparse.ArgumentTypeError(f"{cut(text, 40)!r} is not {'an integer' if kind is int else 'a number'}"
                                             f" (allowed: {allowed})") from None
        if kind is float and not np.isfinite(value):
            raise argparse.ArgumentTypeError(f"{cut(text, 40)} is not a finite number (allowed: {allowed})")
        if lo is not None and (value < lo or (lo_open and value == lo)) or \
                hi is not None and (value > hi or (hi_open and value == hi)):
            raise argparse.ArgumentTypeError(f"{cut(text, 40)} is out of range (allowed: {allowed})")
        return value

    parse.__name__ = kind.__name__  # argparse names the type in some messages
    return parse


def positive_int(text: str) -> int:
    return bounded(int, 1)(text)


def non_negative_int(text: str) -> int:
    return bounded(int, 0)(text)


probability = bounded(float, 0, 1)


class OneLineParser(argparse.ArgumentParser):
    """argparse with its errors as one line (`prog: error: --conf: 2 is out of range ...`), not a usage dump.

    Subparsers made by `add_subparsers` are of the same class, so every command of a model gets it."""

    def error(self, message: str):
        self.exit(2, f"{self.prog}: error: {cut(message, 300)} (see --help)\n")


def load_npy(path) -> np.ndarray:
    """A .npy file as float32, refusing what would lose data or run code: object, complex, non-numeric arrays."""
    try:
        array = np.load(path, allow_pickle=False)
    except FileNotFoundError:
        raise UserError(f"{path}: no such file") from None
    except (ValueError, OSError, EOFError) as e:
        raise UserError(f"{path}: not a readable .npy array ({cut(e, 120)})") from None
    if not isinstance(array, np.ndarray) or array.dtype.kind not in "biuf":
        kind = "complex" if array.dtype.kind == "c" else str(array.dtype)
        raise UserError(f"{path}: holds a {kind} array; expected real numbers (float or integer)")
    return array.astype(np.float32)


def check_batch_in_profile(batch: int, profile, source) -> None:
    """An engine runs only batches inside the optimization profile it was built with, as TensorRT requires."""
    low, _, high = profile
    if not low <= batch <= high:
        raise UserError(f"{source}: batch {batch} is outside the engine's profile {low}..{high} (rebuild with "
                        f"--batch {low}:{max(low, min(batch, high))}:{max(batch, high)} or use smaller batches)")


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
        parser.add_argument("--seed", type=non_negative_int, default=0,
                            help="seed of the random weights (default 0)")
        model.add_arguments(parser)
    parser.add_argument("--backend", choices=("auto", "reference", "tensorrt", "onnx"), default="auto",
                        help="auto: TensorRT where a GPU and TensorRT exist, else ONNX Runtime (CPU) when installed, "
                             "else the CPU reference backend; onnx: the network written as ONNX and run by ONNX "
                             "Runtime (CPU, also for reference engine files)")
    parser.add_argument("--device", choices=("cpu", "cuda"), default="cpu",
                        help="where the reference backend runs: cpu (default), or cuda (the network in PyTorch on "
                             "the GPU, plugins and pre-processing with their Triton kernels; no TensorRT needed)")
    parser.add_argument("--verbose", "-v", action="store_true", help="show tracebacks on errors")


def add_precision_flags(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--precision", choices=PRECISIONS, default="fp32",
                        help="fp32; fp16 (FP16 input, weights, activations; FP32 outputs); int8 (fp16 plus Q/DQ on "
                             "every convolution and matrix multiply, scales from --calib) (default fp32)")
    parser.add_argument("--calib", type=Path, help="calibration cache written by `calibrate` (int8)")
    parser.add_argument("--keep-fp16", type=lambda t: [n for n in t.split(",") if n], default=[],
                        metavar="NAME,...", help="int8: layers (e.g. model.24.m.0) left unquantized, in FP16")
    parser.add_argument("--auto-keep", type=non_negative_int, default=0, metavar="K",
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


def build_engine(model: ZooModel, args, backend=None, run_on_onnx: bool = True) -> tuple[EngineHeader, bytes, object]:
    """`run_on_onnx`: see choose_backend (False for engine files: `build` writes reference engines on a CPU)."""
    weights, config, _ = load_weights(model, args)
    backend = backend or choose_backend(args.backend, getattr(args, "device", "cpu"), run_on_onnx)
    precision = make_precision(model, args, weights, config)
    say(f"building {model.name} ({model.variant(config)}, {precision.mode}) on the {backend_label(backend)}")
    started = time.perf_counter()
    net, outputs = define_network(model, backend, weights, config, precision)
    batch = getattr(args, "batch", None) or (1, 1, 8)
    batch = batch if isinstance(batch, tuple) else (1, batch, max(8, batch))
    options = BuildOptions(model.input_name, batch, int(getattr(args, "workspace", 2.0) * (1 << 30)),
                           str(args.timing_cache) if getattr(args, "timing_cache", None) else None,
                           contexts=getattr(args, "contexts", 1))
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
    """Which executor runs, and (`backend.reason`, set by choose_backend) why it was chosen."""
    why = f" [{backend.reason}]" if getattr(backend, "reason", None) else ""
    if getattr(backend, "name", "") == "onnx":
        return "ONNX backend (the network as ONNX, run by ONNX Runtime on the CPU)" + why
    if isinstance(backend, ReferenceBackend) and backend.device == "cuda":
        return REFERENCE_NOTE.replace("(CPU, PyTorch)", "(CUDA, PyTorch and Triton kernels)") + why
    return (REFERENCE_NOTE if isinstance(backend, ReferenceBackend) else "TensorRT backend") + why


def open_engine(model: ZooModel, path: Path, device: str = "cpu", choice: str = "auto"):
    """(header, runner, backend). `choice` (--backend): auto or onnx run a reference engine on ONNX Runtime when it
    is installed (the faster CPU executor; its optimised graph is cached beside the engine)."""
    header, payload = read_engine(path, expect_model=model.name)
    if header.backend == "tensorrt":
        try:
            backend = choose_backend("tensorrt")  # raises with the reason when no GPU/TensorRT is here
        except RuntimeError as e:
            raise UserError(f"{path}: a TensorRT engine, but {e}") from None
        here = backend.describe()
        if header.tensorrt_version != here["tensorrt_version"] or header.gpu != here["gpu"]:
            raise UserError(f"{path}: built with TensorRT {header.tensorrt_version} for {header.gpu}; this machine "
                            f"has TensorRT {here['tensorrt_version']} on {here['gpu']}: rebuild the engine here")
    elif header.backend == "onnx":
        backend = choose_backend("onnx")
        backend.reason = "an ONNX engine"
    elif header.backend == "reference":
        backend = ReferenceBackend(device)
        if choice in ("auto", "onnx"):
            backend = choose_backend(choice, device)
            backend = backend if getattr(backend, "name", "") == "onnx" else ReferenceBackend(device)
        backend.reason = f"a reference engine; {getattr(backend, 'reason', None) or '--backend ' + choice}"
    else:
        raise UserError(f"{path}: damaged engine header (backend {cut(header.backend, 40)!r})")
    try:
        if getattr(backend, "name", "") == "onnx":
            load = backend.load if header.backend == "onnx" else backend.load_reference_engine
            runner = load(payload, cache_beside=path)
        else:
            runner = backend.load(payload)
    except Exception as e:  # a damaged payload: name the file and what is wrong, whatever the backend said
        raise UserError(f"{path}: damaged engine payload ({cut(' '.join(str(e).split()), 200)})") from None
    _check_runner_matches_header(path, header, runner)
    return header, runner, backend


def _check_runner_matches_header(path: Path, header: EngineHeader, runner) -> None:
    """A header that lies about the payload's tensors would fail later with a bare KeyError: say it here."""
    inputs, outputs = getattr(runner, "inputs", None), getattr(runner, "outputs", None)
    network = getattr(runner, "network", None)
    if network is not None and hasattr(network, "_inputs"):
        inputs = [t.name for t in network._inputs]
        outputs = [t.name for t in network._outputs]
        shapes = {t.name: list(t.shape) for t in network._inputs}
        if header.input_name in shapes and shapes[header.input_name] != list(header.input_shape):
            raise UserError(f"{path}: the header says input shape {cut(header.input_shape, 60)} but the engine's "
                            f"input is {shapes[header.input_name]}")
    if inputs is not None and header.input_name not in inputs:
        raise UserError(f"{path}: the header names input {cut(header.input_name, 60)!r} but the engine's inputs are "
                        f"{cut(inputs, 100)}")
    if outputs is not None and sorted(header.outputs) != sorted(outputs):
        raise UserError(f"{path}: the header names outputs {cut(header.outputs, 100)} but the engine has "
                        f"{cut(outputs, 100)}")


def engine_runner(model: ZooModel, args):
    """(header, runner) from --engine, or from the weights built in memory."""
    if getattr(args, "engine", None):
        header, runner, backend = open_engine(model, args.engine, getattr(args, "device", "cpu"),
                                              getattr(args, "backend", "auto"))
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
