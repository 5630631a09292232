"""Building and opening engines: every stage of a model built into one engine file (its precision from the flags), and
an engine file (or weights built in memory) opened as the model's runner, each header checked against its payload.

The command modules in `zoo.engine.commands` are thin: they parse their flags and call these functions (with
`networks`, `flags` and `errors`), so that build, infer, validate, calibrate, bench, export and serve all go through
one definition of each step.
"""
from __future__ import annotations

import time
from pathlib import Path

import torch

from layers.precision import Precision
from wts.weight_map import WeightMap

from .backend_api import BuildOptions
from .backends import ReferenceBackend, choose_backend
from .engine_file import EngineHeader, read_engine
from .errors import UserError, cut, say
from .model import ZooModel, load_state_into
from .networks import define_network, load_weights, model_stages
from .pipeline import PipelineRunner, Stage, StageRunner, is_pipeline, pack_stages, unpack_stages
from .quantization import load_cache
from .sensitivity import sensitivity


REFERENCE_NOTE = ("reference backend (CPU, PyTorch): a development and validation executor, not a production path; "
                  "use a machine with an NVIDIA GPU and TensorRT for deployment")


def check_batch_in_profile(batch: int, profile, source) -> None:
    """An engine runs only batches inside the optimization profile it was built with, as TensorRT requires."""
    low, _, high = profile
    if not low <= batch <= high:
        raise UserError(f"{source}: batch {batch} is outside the engine's profile {low}..{high} (rebuild with "
                        f"--batch {low}:{max(low, min(batch, high))}:{max(batch, high)} or use smaller batches)")


def build_stage(stage: Stage, backend, precision: Precision, args) -> tuple[EngineHeader, bytes]:
    """One network defined, built and described by its own engine header."""
    network, config = stage.network, stage.config
    net, outputs = define_network(network, backend, stage.weights, config, precision)
    options = BuildOptions(network.input_name, stage.batch, int(getattr(args, "workspace", 2.0) * (1 << 30)),
                           str(args.timing_cache) if getattr(args, "timing_cache", None) else None,
                           shapes=stage.shapes, contexts=getattr(args, "contexts", 1))
    payload = backend.build(net, options)
    header = EngineHeader(model=network.name, variant=network.variant(config), backend=backend.name,
                          input_name=network.input_name, input_shape=[-1, *network.input_shape(config)],
                          batch=list(stage.batch), precision=precision.mode, outputs=outputs, config=config,
                          profile=stage.profile, **backend.describe())
    return header, payload


def build_engine(model: ZooModel, args, backend=None, run_on_onnx: bool = True) -> tuple[EngineHeader, bytes, object]:
    """Every stage of the model built: (the engine file's header, its payload, the backend). `run_on_onnx`: see
    choose_backend (False for engine files: `build` writes reference engines on a CPU)."""
    backend = backend or choose_backend(args.backend, getattr(args, "device", "cpu"), run_on_onnx)
    stages = model_stages(model, args)
    pipeline = is_pipeline(model)
    built = []
    for stage in stages:
        precision = make_precision(stage.network, args, stage.weights, stage.config, stage.name if pipeline else None)
        what = f"{stage.name} of {model.name}" if pipeline else model.name
        say(f"building {what} ({stage.network.variant(stage.config)}, {precision.mode}) on the "
            f"{backend_label(backend)}")
        started = time.perf_counter()
        built.append((stage.name, *build_stage(stage, backend, precision, args)))
        say(f"built in {time.perf_counter() - started:.1f} s")
    if not pipeline:
        return built[0][1], built[0][2], backend
    config = model.pipeline_config(stages, args)
    header = EngineHeader(model=model.name, variant=model.variant(config), backend=backend.name,
                          input_name=model.input_name, input_shape=[-1, *model.input_shape(config)],
                          batch=[1, 1, 8], precision=getattr(args, "precision", "fp32"),
                          outputs=model.output_names(), config=config, **backend.describe())
    header, payload = pack_stages(header, [(name, h, p) for name, h, p in built])
    return header, payload, backend


def make_precision(model: ZooModel, args, weights: WeightMap, config: dict, stage: str | None = None) -> Precision:
    """The precision of one network from the flags. `stage`: the network is that stage of a pipeline, whose cache
    holds every stage's scales as `<stage>/<tensor>` and whose --keep-fp16 names are `<stage>/<layer>`."""
    mode = getattr(args, "precision", "fp32")
    if mode != "int8":
        if getattr(args, "calib", None) or getattr(args, "keep_fp16", None) or getattr(args, "auto_keep", 0):
            raise UserError("--calib, --keep-fp16 and --auto-keep apply to --precision int8 only")
        return Precision(mode)
    if not args.calib:
        raise UserError("--precision int8 needs --calib CACHE (run `calibrate` first)")
    keep = set(getattr(args, "keep_fp16", None) or ())
    if stage is None:
        scales = load_cache(args.calib, model.name, model.variant(config)).scales
    else:
        scales = stage_scales(load_cache(args.calib, model.name, model.name).scales, stage, args.calib)
        keep = {name.split("/", 1)[1] for name in keep if name.startswith(f"{stage}/")}
        if getattr(args, "auto_keep", 0):
            raise UserError("--auto-keep ranks the layers of one network; for a pipeline name them with "
                            "--keep-fp16 STAGE/LAYER,...")
    if getattr(args, "auto_keep", 0):
        ranking = sensitivity(model, weights, config, scales, args)
        keep |= {layer for layer, _ in ranking[:args.auto_keep]}
        say(f"--auto-keep {args.auto_keep}: keeping in FP16 {sorted(keep)}")
    if keep:
        _check_layer_names(model, weights, config, keep)
    return Precision("int8", scales, frozenset(keep))


def stage_scales(scales: dict[str, float], stage: str, source) -> dict[str, float]:
    """One stage's scales out of a pipeline's calibration cache (names `<stage>/<tensor>`)."""
    prefix = f"{stage}/"
    mine = {name[len(prefix):]: scale for name, scale in scales.items() if name.startswith(prefix)}
    if not mine:
        raise UserError(f"--calib {source}: no scales of stage {stage} (names {prefix}...); calibrate the pipeline")
    return mine


def _check_layer_names(model: ZooModel, weights: WeightMap, config: dict, keep: set[str]) -> None:
    probe = Precision("fp32")
    define_network(model, ReferenceBackend(), weights, config, probe)
    unknown = keep - set(probe.quantizable_layers())
    if unknown:
        raise UserError(f"--keep-fp16: {sorted(unknown)} are not quantizable layers of {model.variant(config)} "
                        f"(e.g. {probe.quantizable_layers()[:3]})")


def backend_label(backend) -> str:
    """Which executor runs, and (`backend.reason`, set by choose_backend) why it was chosen."""
    why = f" [{backend.reason}]" if getattr(backend, "reason", None) else ""
    if getattr(backend, "name", "") == "onnx":
        return "ONNX backend (the network as ONNX, run by ONNX Runtime on the CPU)" + why
    if isinstance(backend, ReferenceBackend) and backend.device == "cuda":
        return REFERENCE_NOTE.replace("(CPU, PyTorch)", "(CUDA, PyTorch and Triton kernels)") + why
    return (REFERENCE_NOTE if isinstance(backend, ReferenceBackend) else "TensorRT backend") + why


def open_stages(model: ZooModel, path: Path, device: str = "cpu",
                choice: str = "auto") -> tuple[EngineHeader, dict, object]:
    """An engine file opened: (its header, {stage: StageRunner}, backend). A single network is its one stage.
    `choice` (--backend): auto or onnx run a reference engine on ONNX Runtime when it is installed (the faster CPU
    executor; its optimised graph is cached beside the engine, keyed by each stage's payload)."""
    header, payload = read_engine(path, expect_model=model.name)
    backend = _backend_for(path, header, device, choice)
    stages = {}
    for name, (stage_header, stage_payload) in unpack_stages(path, header, payload).items():
        try:
            runner = _load(backend, header, stage_payload, path)
        except Exception as e:  # a damaged payload: name the file and what is wrong, whatever the backend said
            where = f" (stage {name})" if header.stages else ""
            raise UserError(f"{path}: damaged engine payload{where} ({cut(' '.join(str(e).split()), 200)})") from None
        _check_runner_matches_header(path, stage_header, runner)
        stages[name] = StageRunner(stage_header, runner)
    if is_pipeline(model) and list(stages) != list(model.stage_names):
        raise UserError(f"{path}: holds the stages {list(stages)}, not {model.name}'s {list(model.stage_names)}")
    return header, stages, backend


def _load(backend, header: EngineHeader, payload: bytes, path: Path):
    """A runner of one payload; ONNX Runtime keeps its optimised graph beside the engine file."""
    if getattr(backend, "name", "") != "onnx":
        return backend.load(payload)
    load = backend.load if header.backend == "onnx" else backend.load_reference_engine
    return load(payload, cache_beside=path)


def _backend_for(path: Path, header: EngineHeader, device: str, choice: str = "auto"):
    """The backend that runs an engine file, checked to be able to run it here, with the reason it was chosen."""
    if header.backend == "tensorrt":
        try:
            backend = choose_backend("tensorrt")  # raises with the reason when no GPU/TensorRT is here
        except RuntimeError as e:
            raise UserError(f"{path}: a TensorRT engine, but {e}") from None
        here = backend.describe()
        if header.tensorrt_version != here["tensorrt_version"] or header.gpu != here["gpu"]:
            raise UserError(f"{path}: built with TensorRT {header.tensorrt_version} for {header.gpu}; this machine "
                            f"has TensorRT {here['tensorrt_version']} on {here['gpu']}: rebuild the engine here")
        return backend
    if header.backend == "onnx":
        backend = choose_backend("onnx")
        backend.reason = "an ONNX engine"
        return backend
    if header.backend == "reference":
        backend = ReferenceBackend(device)
        if choice in ("auto", "onnx"):
            chosen = choose_backend(choice, device)
            backend = chosen if getattr(chosen, "name", "") == "onnx" else backend
            backend.reason = f"a reference engine; {getattr(chosen, 'reason', None) or '--backend ' + choice}"
        else:
            backend.reason = f"a reference engine; --backend {choice}"
        return backend
    raise UserError(f"{path}: damaged engine header (backend {cut(header.backend, 40)!r})")


def open_engine(model: ZooModel, path: Path, device: str = "cpu", choice: str = "auto"):
    """A single network's engine file: (header, runner, backend)."""
    header, stages, backend = open_stages(model, path, device, choice)
    if header.stages is not None:
        raise UserError(f"{path}: a pipeline of {len(stages)} networks; open it with open_stages")
    return header, stages[header.model].runner, backend


def _check_runner_matches_header(path: Path, header: EngineHeader, runner) -> None:
    """A header that lies about the payload's tensors would fail later with a bare KeyError: say it here."""
    inputs, outputs = getattr(runner, "inputs", None), getattr(runner, "outputs", None)
    inputs = getattr(runner, "input_names", None) if inputs is None else inputs     # ONNX Runtime's runner
    outputs = getattr(runner, "output_names", None) if outputs is None else outputs
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


def load_stages(header: EngineHeader, payload: bytes, backend) -> dict[str, StageRunner]:
    """The stages of an engine just built, loaded without a file."""
    return {name: StageRunner(stage_header, backend.load(stage_payload))
            for name, (stage_header, stage_payload) in unpack_stages("(in memory)", header, payload).items()}


def connect(model: ZooModel, header: EngineHeader, stages: dict[str, StageRunner], args):
    """The model's runner: a single network's own runner, or the pipeline's glue over its stages."""
    if not is_pipeline(model):
        return stages[header.model].runner
    return PipelineRunner(model.connect(stages, header.config, args), stages, model.input_name)


def engine_runner(model: ZooModel, args):
    """(header, runner) from --engine, or from the weights built in memory."""
    if getattr(args, "engine", None):
        header, stages, backend = open_stages(model, args.engine, getattr(args, "device", "cpu"),
                                              getattr(args, "backend", "auto"))
        say(f"engine {args.engine}: {header.variant} on the {backend_label(backend)}")
    else:
        header, payload, backend = build_engine(model, args)
        stages = load_stages(header, payload, backend)
    return header, connect(model, header, stages, args)


def runner_for(backend, net, input_name: str, batch: int, shape: tuple | None = None):
    """A runner for a network just defined: the reference backend runs it as is, TensorRT builds it first (for
    exactly `shape` when more than the batch is dynamic)."""
    if isinstance(backend, ReferenceBackend):
        return backend.runner_for(net)
    shapes = {input_name: (tuple(shape),) * 3} if shape is not None else None
    return backend.load(backend.build(net, BuildOptions(input_name, (batch,) * 3, allow_tf32=False, shapes=shapes)))


def reference_for(model: ZooModel, args, device: str) -> torch.nn.Module:
    """The PyTorch reference module with the weights of `args`, on `device`; a pipeline's own PyTorch pipeline."""
    if is_pipeline(model):
        return model.reference_pipeline(args, device)
    weights, config, module = load_weights(model, args)
    module = module if module is not None else load_state_into(model.reference_module(config), weights)
    return module.eval().to(device)
