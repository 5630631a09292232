"""`export onnx`: the model's network as a plain ONNX file, for ONNX Runtime, `trtexec --onnx`, OpenVINO, MNN, TF-Lite.

    python -m zoo.yolov5 export onnx --weights yolov5s.pt -o yolov5s.onnx [--precision fp16] [--batch 1:8:16]

The file describes exactly the network `build` builds (the same builder code, through the ONNX writer of
zoo.engine.onnx): the same tensor names, FP32 outputs, plugins in their plain-ONNX form, the batch as the symbolic
dimension "batch" (a fixed size when --batch is N). A pipeline (MTCNN) is a folder with one file per network, each
with its stage's batch range. Each file is checked with onnx.checker before it is written, and
metadata records the model, variant, precision, batch range and configuration (class names included).
"""
from __future__ import annotations

import json
from pathlib import Path

from zoo.engine.files import write_bytes_atomic
from zoo.engine.pipeline import is_pipeline
from zoo.engine.engines import make_precision
from zoo.engine.errors import say, UserError
from zoo.engine.flags import add_common_flags, add_precision_flags, parse_batch
from zoo.engine.networks import define_network, model_stages

HELP = "a plain .onnx file of the network (opset 17), checked with onnx.checker"


def add_arguments(parser, model) -> None:
    add_common_flags(parser, model)
    parser.add_argument("--output", "-o", type=Path, required=True, help=".onnx file to write")
    parser.add_argument("--batch", type=parse_batch, default=(1, 1, 8),
                        help="batch range, N (a fixed batch) or MIN:OPT:MAX (a symbolic 'batch' dimension, the range "
                             "in the metadata) (default 1:1:8)")
    add_precision_flags(parser)


def run(model, args) -> int:
    """One .onnx of the network; for a pipeline, a folder with one .onnx per stage (`<output>/<stage>.onnx`)."""
    import onnx  # noqa: F401  (the package is needed: a clear ImportError before any work)
    if args.weights is not None and args.output.resolve() == args.weights.resolve():
        raise UserError(f"--output {args.output} would overwrite the weights it is made from")
    pipeline = is_pipeline(model)
    if pipeline and args.output.exists() and not args.output.is_dir():
        raise UserError(f"--output {args.output}: {model.name} is a pipeline; its export is a folder with one .onnx "
                        f"per stage, and this is a file")
    stages = model_stages(model, args)
    written = [(stage.name, export_stage(model, stage, args, pipeline)) for stage in stages]  # all before writing
    for name, data in written:
        path = args.output / f"{name}.onnx" if pipeline else args.output
        write_bytes_atomic(path, data)
        say(f"wrote {path} ({len(data) / 1e6:.1f} MB)")
    return 0


def export_stage(model, stage, args, pipeline: bool) -> bytes:
    """One network as a checked ONNX file's bytes."""
    import onnx

    from zoo.engine.onnx.backend import OnnxBackend
    from zoo.engine.onnx.graph import OPSET
    from zoo.engine.onnx.writer import to_onnx
    network, config = stage.network, stage.config
    precision = make_precision(network, args, stage.weights, config, stage.name if pipeline else None)
    say(f"exporting {network.name} ({network.variant(config)}, {precision.mode}) as ONNX opset {OPSET}")
    net, outputs = define_network(network, OnnxBackend(), stage.weights, config, precision)
    metadata = {"model": model.name, "variant": network.variant(config), "precision": precision.mode,
                "input": network.input_name, "outputs": json.dumps(outputs), "config": json.dumps(config)}
    batch = stage.batch if pipeline else tuple(args.batch)
    proto = to_onnx(net, batch=batch, metadata=metadata, graph_name=network.variant(config))
    onnx.checker.check_model(proto, full_check=True)
    say(f"{network.variant(config)}: opset {OPSET}, {len(proto.graph.node)} nodes, batch {':'.join(map(str, batch))}, "
        f"input {network.input_name!r}, outputs {outputs}")
    return proto.SerializeToString()
