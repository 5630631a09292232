"""Flags and command-line inputs every command shares: range-checked flag types (one line naming the value and the
range), the one-line argparse parser, the batch range, the common and precision flags, and a checked .npy input."""
from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np

from layers.precision import PRECISIONS

from .errors import UserError, cut
from .model import ZooModel


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
