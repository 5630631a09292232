"""`export triton`: a Triton Inference Server model repository (an ensemble per model; see zoo.triton.repository).

    python -m zoo.yolov5 export triton --engine y5n.engine -o model_repository/
    python -m zoo.triton serve model_repository/
"""
from __future__ import annotations

import argparse
from pathlib import Path

from zoo.engine.engine_file import EngineFileError, read_engine
from zoo.engine.engines import build_engine
from zoo.engine.errors import say, UserError
from zoo.engine.flags import add_common_flags, add_precision_flags, parse_batch

HELP = "a Triton Inference Server model repository: ensemble of pre-processing, network, post-processing"


def add_arguments(parser, model) -> None:
    add_common_flags(parser, model)
    parser.add_argument("--engine", "-e", type=Path, help="engine built by `build` (otherwise built from weights)")
    parser.add_argument("--output", "-o", type=Path, required=True, help="model repository folder (created)")
    parser.add_argument("--name", help="ensemble name in the repository (default: the model family's name)")
    parser.add_argument("--network", choices=("auto", "plan", "python"), default="auto",
                        help="the network step: plan (tensorrt_plan, the raw TensorRT plan), python (the zoo "
                             "runtime in the python backend, any backend incl. the CPU reference), auto: plan for "
                             "a TensorRT engine, else python (default auto)")
    parser.add_argument("--instances", type=int, default=1, help="instances of the network step (default 1)")
    parser.add_argument("--kind", choices=("auto", "gpu", "cpu"), default="auto",
                        help="instance_group kind of the network step (auto: GPU for a plan, else CPU)")
    parser.add_argument("--preferred-batch", type=lambda t: tuple(int(v) for v in t.split(",") if v),
                        default=(), metavar="N,...", help="dynamic batching preferred sizes (default: the "
                                                          "profile's opt and max)")
    parser.add_argument("--max-queue-delay-us", type=int, default=5000,
                        help="dynamic batching: longest wait for more requests, microseconds (default 5000)")
    parser.add_argument("--no-dynamic-batching", action="store_true",
                        help="no dynamic_batching in the configs: each request runs alone (a benchmark baseline)")
    parser.add_argument("--batch", type=parse_batch, default=(1, 4, 8),
                        help="without --engine: batch range MIN:OPT:MAX of the engine built (default 1:4:8)")
    add_precision_flags(parser)
    inference = parser.add_argument_group("post-processing in the ensemble (infer's flags)")
    model.add_infer_arguments(inference)


def run(model, args) -> int:
    from zoo.triton.repository import RepositoryOptions, write_pipeline_repository, write_repository
    if args.engine:
        try:
            header, payload = read_engine(args.engine, expect_model=model.name)
        except EngineFileError as e:
            raise UserError(str(e)) from None
    else:
        header, payload, _ = build_engine(model, args)
    network = args.network if args.network != "auto" else ("plan" if header.backend == "tensorrt" else "python")
    kind = args.kind if args.kind != "auto" else ("gpu" if network == "plan" else "cpu")
    if args.instances < 1 or args.max_queue_delay_us < 0:
        raise UserError("--instances must be at least 1 and --max-queue-delay-us not negative")
    parser = argparse.ArgumentParser(add_help=False)
    model.add_infer_arguments(parser)
    thresholds = {k: getattr(args, k) for k in vars(parser.parse_args([])) if k not in ("no_draw",)}
    options = RepositoryOptions(name=args.name or model.name, network=network, instances=args.instances, kind=kind,
                                preferred_batch=args.preferred_batch, max_queue_delay_us=args.max_queue_delay_us,
                                dynamic_batching=not args.no_dynamic_batching, options=thresholds)
    try:
        write = write_pipeline_repository if header.stages is not None else write_repository
        written = write(model, header, args.engine, payload, args.output, options)
    except ValueError as e:
        raise UserError(str(e)) from None
    say(f"wrote {args.output}: {', '.join(p.name for p in written)} ({network} network, max batch "
        f"{header.batch[2]}); serve it with: python -m zoo.triton serve {args.output}")
    return 0
