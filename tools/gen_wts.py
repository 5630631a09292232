"""Convert a PyTorch checkpoint to a tensorrtx ``.wts`` file.

    python tools/gen_wts.py -w yolov5s.pt -o yolov5s.wts

Accepts what ``zoo.engine.checkpoint.load_state_dict`` accepts: ultralytics checkpoints (``model`` / ``ema``),
pickled modules, plain state_dicts, TorchScript archives and ONNX files (their initializers under state_dict names,
BatchNorm usually folded into conv biases; needs the ``onnx`` package), without importing the upstream code and without
running code from the file. Every state_dict entry is written, ``num_batches_tracked`` included, in state_dict
order, as float32 in the exact byte format of tensorrtx's ``gen_wts.py``.
"""
from __future__ import annotations

import argparse
import os
import sys
import traceback

if __package__ in (None, ""):  # run as a script: make the repository importable
    sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import wts  # noqa: E402

PROG = "gen_wts"
PROGRESS_MIN_VALUES = 1_000_000  # show progress for checkpoints with at least this many values


class _UsageError(Exception):
    pass


class _Parser(argparse.ArgumentParser):
    def error(self, message):  # one line instead of argparse's usage + message
        raise _UsageError(f"{message} (see --help)")


def _parser() -> argparse.ArgumentParser:
    p = _Parser(prog=PROG, description=__doc__,
                formatter_class=argparse.RawDescriptionHelpFormatter,
                epilog="Exit status: 0 on success, 2 on a user error (one line on stderr; --verbose for the "
                       "traceback).")
    p.add_argument("-w", "--weights", required=True,
                   help="input checkpoint: .pt/.pth (checkpoint dict, pickled module or state_dict), "
                        "TorchScript archive, .onnx (e.g. an ultralytics export), or .wts")
    p.add_argument("-o", "--output",
                   help="output .wts file (default: the input path with the suffix .wts). Written to a "
                        "temporary file first and renamed, so it is never left half-written")
    p.add_argument("--style", choices=sorted(wts.STYLES), default="tensorrtx",
                   help="'tensorrtx' (default) writes tensorrtx's exact bytes, with two spaces before the first "
                        "value; 'compact' uses single spaces. Both are read by any .wts reader that splits on "
                        "whitespace")
    p.add_argument("-q", "--quiet", action="store_true", help="no progress and no summary")
    p.add_argument("-v", "--verbose", action="store_true", help="print tracebacks on errors")
    return p


class _Progress:
    """Percentage on stderr in 10 % steps, for big checkpoints only."""

    def __init__(self, output: str, enabled: bool):
        self.output, self.enabled, self.next = output, enabled, 10

    def __call__(self, done: int, total: int) -> None:
        if not self.enabled or total < PROGRESS_MIN_VALUES:
            return
        pct = 100 * done // total
        if pct >= self.next:
            print(f"{PROG}: writing {self.output}: {pct}%", file=sys.stderr, flush=True)
            self.next = pct - pct % 10 + 10


def main(argv: list[str] | None = None) -> int:
    args = None
    try:
        args = _parser().parse_args(argv)
        if not os.path.isfile(args.weights):  # before the slow torch import
            raise _UsageError(f"{args.weights}: " + ("is a directory" if os.path.isdir(args.weights)
                                                      else "no such file"))
        from zoo.engine.checkpoint import CheckpointError, load_state_dict  # imports torch
        from zoo.engine.files import same_file

        output = args.output or os.path.splitext(args.weights)[0] + ".wts"
        if same_file(output, args.weights):  # links resolved: a link to the input is the input
            raise _UsageError(f"output {output} is the input file {args.weights} (links resolved); choose "
                              f"another with -o")
        if os.path.isdir(output):
            raise _UsageError(f"output {output} is a directory")
        if not os.path.isdir(os.path.dirname(os.path.abspath(output))):
            raise _UsageError(f"output folder {os.path.dirname(os.path.abspath(output))} does not exist")
        try:
            ckpt = load_state_dict(args.weights)
        except CheckpointError as e:
            ckpt = _paddle_export(args.weights, e)
        values = sum(int(a.size) for a in ckpt.tensors.values())
        if not args.quiet:
            names = f", {len(ckpt.names)} class names" if ckpt.names else ""
            print(f"{PROG}: read {args.weights}: {ckpt.source}, {len(ckpt.tensors)} entries{names}",
                  file=sys.stderr, flush=True)
        try:
            written = wts.save(output, ckpt.tensors, style=args.style,
                               progress=_Progress(output, not args.quiet))
        except OSError as e:
            raise _UsageError(f"cannot write {output}: {e.strerror or e}") from e
        if not args.quiet:
            print(f"{PROG}: wrote {output}: {len(ckpt.tensors)} entries, {values} values, {written} bytes "
                  f"({written / 1e6:.1f} MB)")
        return 0
    except SystemExit as e:  # --help
        return e.code if isinstance(e.code, int) else 0
    except (_UsageError, wts.WtsError) as e:
        if args is not None and args.verbose:
            traceback.print_exc()
        print(f"{PROG}: error: {_one_line(e)}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"{PROG}: interrupted", file=sys.stderr)
        return 130
    except Exception as e:
        if args is not None and args.verbose:
            traceback.print_exc()
        print(f"{PROG}: error: unexpected {type(e).__name__}: {_one_line(e)} (run with --verbose for the "
              f"traceback)", file=sys.stderr)
        return 1


def _paddle_export(path: str, error: Exception):
    """A Paddle-exported ONNX file (PP-OCR's: weights as Constant nodes with flat Paddle names), its tensors under
    the structured names of zoo.ppocr's reference modules; otherwise the loader's own error."""
    from zoo.engine.checkpoint import Checkpoint, CheckpointError
    if not path.lower().endswith(".onnx"):
        raise _UsageError(str(error)) from error
    from zoo.ppocr.onnx_import import import_paddle_onnx
    try:
        state, config = import_paddle_onnx(path)
    except CheckpointError:
        raise _UsageError(str(error)) from error
    return Checkpoint(state, None, f"Paddle ONNX export (PP-OCR {config['stage']}), mapped by walking its graph")


def _one_line(e: BaseException) -> str:
    return " ".join(str(e).split("\n"))


if __name__ == "__main__":
    sys.exit(main())
