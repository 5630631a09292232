"""`build`: weights -> a serialized engine file with the zoo's header."""
from __future__ import annotations

from pathlib import Path

from ..engine_file import write_engine
from ..files import refuse_overwrite
from ..engines import build_engine
from ..errors import say
from ..flags import add_common_flags, add_precision_flags, bounded, parse_batch

HELP = "build and serialize an engine from weights"


def add_arguments(parser, model) -> None:
    add_common_flags(parser, model)
    parser.add_argument("--output", "-o", type=Path, required=True, help="engine file to write")
    parser.add_argument("--batch", type=parse_batch, default=(1, 1, 8),
                        help="batch range of the optimization profile, N or MIN:OPT:MAX (default 1:1:8)")
    parser.add_argument("--workspace", type=bounded(float, 0, 1 << 20, lo_open=True), default=2.0, help="TensorRT workspace limit in GiB (default 2)")
    parser.add_argument("--timing-cache", type=Path, help="TensorRT timing cache file, read and updated")
    parser.add_argument("--contexts", type=bounded(int, 1, 16), default=1,
                        help="TensorRT: threads that may run the engine at once (one optimization profile each; "
                             "more threads wait for a free one) (default 1)")
    add_precision_flags(parser)


def run(model, args) -> int:
    refuse_overwrite({"--output": args.output}, {"--weights": args.weights, "--calib": args.calib})
    header, payload, _ = build_engine(model, args, run_on_onnx=False)
    write_engine(args.output, header, payload)
    say(f"wrote {args.output} ({len(payload) / 1e6:.1f} MB, {header.backend} backend, batch "
        f"{':'.join(map(str, header.batch))}, outputs {header.outputs})")
    return 0
