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
# Where NVIDIA's Triton images keep the TensorRT backend; the bundled server (nvidia-pytriton's tritonserver) has the
# python backend only, so a tensorrt_plan model is of use only where this folder exists.
NVIDIA_TENSORRT_BACKEND = Path("/opt/tritonserver/backends/tensorrt")


def add_arguments(parser, model) -> None:
    add_common_flags(parser, model)
    parser.add_argument("--engine", "-e", type=Path, help="engine built by `build` (otherwise built from weights)")
    parser.add_argument("--output", "-o", type=Path, required=True, help="model repository folder (created)")
    parser.add_argument("--name", help="ensemble name in the repository (default: the model family's name)")
    parser.add_argument("--network", choices=("auto", "plan", "python"), default="auto",
                        help="the network step: plan (tensorrt_plan, the raw TensorRT plan: NVIDIA's Triton "
                             "images), python (the zoo runtime in the python backend, any engine: what `python -m "
                             "zoo.triton serve` loads), auto: plan for a TensorRT engine on a machine with NVIDIA's "
                             f"Triton ({NVIDIA_TENSORRT_BACKEND}) and no bundled server, else python (default auto)")
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


def default_network(backend: str) -> str:
    """The network step the Triton of this machine loads: a plan only where NVIDIA's Triton with its TensorRT backend
    is what runs; the bundled server loads the python step, which runs the zoo's own runtime on any engine."""
    from zoo.triton.server import TritonNotFound, find_server_site
    if backend != "tensorrt" or not NVIDIA_TENSORRT_BACKEND.is_dir():
        return "python"
    try:
        find_server_site()
    except TritonNotFound:
        return "plan"
    return "python"


def run(model, args) -> int:
    from zoo.triton.repository import RepositoryOptions, check_model_name, write_pipeline_repository, write_repository
    name = model.name if args.name is None else args.name
    try:
        check_model_name(name)  # before a build that may take minutes
    except ValueError as e:
        raise UserError(str(e)) from None
    if args.engine:
        try:
            header, payload = read_engine(args.engine, expect_model=model.name)
        except EngineFileError as e:
            raise UserError(str(e)) from None
    else:
        header, payload, _ = build_engine(model, args)
    network = args.network if args.network != "auto" else default_network(header.backend)
    kind = args.kind if args.kind != "auto" else ("gpu" if network == "plan" else "cpu")
    if args.instances < 1 or args.max_queue_delay_us < 0:
        raise UserError("--instances must be at least 1 and --max-queue-delay-us not negative")
    parser = argparse.ArgumentParser(add_help=False)
    model.add_infer_arguments(parser)
    thresholds = {k: getattr(args, k) for k in vars(parser.parse_args([])) if k not in ("no_draw",)}
    options = RepositoryOptions(name=name, network=network, instances=args.instances, kind=kind,
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
