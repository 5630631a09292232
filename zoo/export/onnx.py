"""`export onnx`: the model's network as a plain ONNX file, for ONNX Runtime, `trtexec --onnx`, OpenVINO, MNN, TF-Lite.

    python -m zoo.yolov5 export onnx --weights yolov5s.pt -o yolov5s.onnx [--precision fp16] [--batch 1:8:16]

The file describes exactly the network `build` builds (the same builder code, through the ONNX writer of
zoo.engine.onnx): the same tensor names, FP32 outputs, plugins in their plain-ONNX form, the batch as the symbolic
dimension "batch" (a fixed size when --batch is N). It is checked with onnx.checker before it is written, and
metadata records the model, variant, precision, batch range and configuration (class names included).
"""
from __future__ import annotations

import json
from pathlib import Path

from zoo.engine.files import write_bytes_atomic
from zoo.engine.workflow import (UserError, add_common_flags, add_precision_flags, define_network, load_weights,
                                 make_precision, parse_batch, say)

HELP = "a plain .onnx file of the network (opset 17), checked with onnx.checker"


def add_arguments(parser, model) -> None:
    add_common_flags(parser, model)
    parser.add_argument("--output", "-o", type=Path, required=True, help=".onnx file to write")
    parser.add_argument("--batch", type=parse_batch, default=(1, 1, 8),
                        help="batch range, N (a fixed batch) or MIN:OPT:MAX (a symbolic 'batch' dimension, the range "
                             "in the metadata) (default 1:1:8)")
    add_precision_flags(parser)


def run(model, args) -> int:
    import onnx

    from zoo.engine.onnx.backend import OnnxBackend
    from zoo.engine.onnx.graph import OPSET, to_onnx
    if args.weights is not None and args.output.resolve() == args.weights.resolve():
        raise UserError(f"--output {args.output} would overwrite the weights it is made from")
    weights, config, _ = load_weights(model, args)
    precision = make_precision(model, args, weights, config)
    say(f"exporting {model.name} ({model.variant(config)}, {precision.mode}) as ONNX opset {OPSET}")
    net, outputs = define_network(model, OnnxBackend(), weights, config, precision)
    metadata = {"model": model.name, "variant": model.variant(config), "precision": precision.mode,
                "input": model.input_name, "outputs": json.dumps(outputs), "config": json.dumps(config)}
    proto = to_onnx(net, batch=tuple(args.batch), metadata=metadata, graph_name=model.variant(config))
    onnx.checker.check_model(proto, full_check=True)
    data = proto.SerializeToString()
    write_bytes_atomic(args.output, data)
    say(f"wrote {args.output} ({len(data) / 1e6:.1f} MB, opset {OPSET}, {len(proto.graph.node)} nodes, batch "
        f"{':'.join(map(str, args.batch))}, input {model.input_name!r}, outputs {outputs})")
    return 0
