"""Writing a Triton model repository for a zoo engine: an ensemble of pre-processing, network, post-processing.

    <name>/               ensemble: IMAGE (encoded bytes) -> RECORD (infer's JSON record) + DETECTIONS or TOP_*
    <name>_preprocess/    python backend: the model's own load_images (letterbox, ImageNet crop, ...)
    <name>_network/       tensorrt_plan: the raw plan (the zoo header stripped, its facts in config and zoo.json)
                          or python backend: the zoo runtime on the engine file (`--network python`)
    <name>_postprocess/   python backend: the model's own records (NMS, boxes in original pixels, top-k)

A pipeline of several networks (MTCNN) is one python-backend model instead, `<name>/`: image in, record out, its
engine file run by the zoo runtime (`write_pipeline_repository`, `steps.Pipeline`).

`config.pbtxt` comes from the engine header: max_batch_size from the profile's max, dims and data types from the
network, dynamic_batching and instance_group from the export's flags.

The export's name is a model name, never a path, and the export replaces only folders it wrote itself
(`is_zoo_export`): anything else with one of its folder names is refused, and nothing is replaced until every
folder has been checked.
"""
from __future__ import annotations

import json
import re
import shutil
import tempfile
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

from zoo.engine.engine_file import EngineHeader, write_engine

IMAGE, CONTEXT, RECORD = "IMAGE", "CONTEXT", "RECORD"
DETECTIONS, TOP_CLASS_IDS, TOP_SCORES = "DETECTIONS", "TOP_CLASS_IDS", "TOP_SCORES"

MODEL_PY = '''"""Written by `export triton`: the {step} step of {name}. The code is zoo.triton.steps.{cls}.

tritonserver's python stub ignores PYTHONPATH: `python -m zoo.triton serve` passes the zoo's import paths in
ZOO_TRITON_PATH (the zoo checkout and its environment's site-packages).
"""
import os
import sys

sys.path[:0] = [p for p in os.environ.get("ZOO_TRITON_PATH", "").split(os.pathsep) if p and p not in sys.path]

from zoo.triton.steps import {cls} as TritonPythonModel  # noqa: E402,F401
'''


@dataclass
class Sidecar:
    """zoo.json beside each step's config: the engine header (the facts a raw plan no longer carries) and options."""
    step: str
    network: str                       # "plan" | "python"
    kind: str                          # "detect" | "classify" | "other": which numeric outputs RECORD comes with
    header: dict
    options: dict = field(default_factory=dict)   # post-processing thresholds, from infer's flags

    def engine_header(self) -> EngineHeader:
        return EngineHeader(**self.header)

    def save(self, path: Path) -> None:
        path.write_text(json.dumps(asdict(self), indent=1))

    @staticmethod
    def load(path: Path) -> "Sidecar":
        return Sidecar(**json.loads(Path(path).read_text()))


@dataclass
class RepositoryOptions:
    name: str
    network: str = "python"            # "plan" | "python"
    instances: int = 1
    kind: str = "cpu"                  # "gpu" | "cpu": instance_group kind of the network step
    preferred_batch: tuple[int, ...] = ()
    max_queue_delay_us: int = 5000
    dynamic_batching: bool = True      # off: each request runs alone (the baseline of tools/bench_serve.py)
    options: dict = field(default_factory=dict)


def model_kind(model, config: dict) -> str:
    return model.output_kind(config)


def outputs_of_record(kind: str, records: list[dict]) -> dict:
    """The ensemble's outputs for a request's records: RECORD (JSON) and the numbers as tensors.
    Detections of several images in one request are padded to the longest with rows of -1."""
    out = {RECORD: np.array([json.dumps(r).encode() for r in records], dtype=object).reshape(-1, 1)}
    if kind == "detect":
        rows = [[[*d["box"], d["score"], d["class_id"]] for d in r.get("detections", [])] for r in records]
        longest = max((len(r) for r in rows), default=0)
        dets = np.full((len(rows), longest, 6), -1, np.float32)
        for i, r in enumerate(rows):
            if r:
                dets[i, :len(r)] = r
        out[DETECTIONS] = dets
    elif kind == "classify":
        k = max((len(r.get("top", [])) for r in records), default=0)
        ids, scores = np.full((len(records), k), -1, np.int32), np.zeros((len(records), k), np.float32)
        for i, r in enumerate(records):
            for j, t in enumerate(r.get("top", [])):
                ids[i, j], scores[i, j] = t["class_id"], t["score"]
        out[TOP_CLASS_IDS], out[TOP_SCORES] = ids, scores
    return out


def output_shapes(model, header: EngineHeader) -> dict[str, tuple[list[int], str]]:
    """Each network output's dims without the batch and its Triton type, from the network defined on the reference
    backend with random weights of the same configuration (shapes do not depend on weight values; no TensorRT
    needed). Float outputs are FP32; an integer output (a semantic class map) keeps its type."""
    from zoo.trt_api import trt
    from wts.weight_map import WeightMap
    from zoo.engine.backends import ReferenceBackend
    from zoo.engine.model import state_dict_arrays
    from zoo.engine.networks import define_network
    weights = WeightMap(state_dict_arrays(model.reference_module(header.config)), "shape probe")
    net, names = define_network(model, ReferenceBackend(), weights, header.config)
    types = {trt.uint8: "TYPE_UINT8", trt.int32: "TYPE_INT32"}
    shapes = {net.get_output(i).name: (list(net.get_output(i).shape)[1:], types.get(net.get_output(i).dtype,
                                                                                     "TYPE_FP32"))
              for i in range(net.num_outputs)}
    return {name: shapes[name] for name in names}


# A model's name is its folder in the repository and a path segment of Triton's URLs (/v2/models/<name>/...);
# Triton sets no rule beyond the layout <repository>/<model-name>/config.pbtxt
# (https://docs.nvidia.com/deeplearning/triton-inference-server/user-guide/docs/user_guide/model_repository.html),
# so the zoo takes a set that is safe in a path segment, a URL and a config string: no '/', no '..', no quote.
MODEL_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,99}")


def check_model_name(name: str) -> None:
    if not MODEL_NAME.fullmatch(name or "") or ".." in name:
        raise ValueError(f"--name {name!r}: a Triton model name is 1 to 100 letters, digits, '_', '-' or '.', "
                         "starting with a letter or digit, and never a path")


# What `export triton` writes in a model folder; `1/__pycache__` appears once the python backend has loaded model.py.
EXPORT_FILES = {"config.pbtxt", "zoo.json", "1", "1/model.plan", "1/model.engine", "1/model.py", "1/__pycache__"}


def is_zoo_export(folder: Path) -> bool:
    """Whether `folder` holds nothing but what an earlier `export triton` wrote (its own zoo.json among it), so that
    replacing it loses nothing of the user's. Links are never the zoo's."""
    if folder.is_symlink() or not folder.is_dir():
        return False
    entries = list(folder.rglob("*"))
    for entry in entries:
        relative = entry.relative_to(folder).as_posix()
        cached = relative.startswith("1/__pycache__/") and entry.suffix == ".pyc" and relative.count("/") == 2
        if entry.is_symlink() or (relative not in EXPORT_FILES and not cached):
            return False
    try:
        if not (folder / "zoo.json").exists():  # an ensemble of an export before zoo.json was written there
            return {e.relative_to(folder).as_posix() for e in entries} == {"config.pbtxt", "1"} and \
                'platform: "ensemble"' in (folder / "config.pbtxt").read_text()
        return isinstance(json.loads((folder / "zoo.json").read_text()).get("step"), str)
    except (OSError, ValueError, AttributeError, UnicodeDecodeError):
        return False


def check_replaceable(out: Path, folders: list[str]) -> None:
    for folder in folders:
        target = out / folder
        if (target.exists() or target.is_symlink()) and not is_zoo_export(target):
            raise ValueError(f"{target}: exists and is not an earlier `export triton` of the zoo (it holds other "
                             "files); move it away or choose another --name or -o")


def check_servable(header: EngineHeader, options: RepositoryOptions) -> None:
    """What Triton could not load or would call wrongly, refused before anything is written."""
    check_model_name(options.name)
    if options.network == "plan" and header.backend != "tensorrt":
        raise ValueError(f"--network plan needs a TensorRT engine; this one is for the {header.backend} backend "
                         "(use --network python, or build on a machine with TensorRT)")
    if options.network == "plan" and options.kind != "gpu":
        # Triton's TensorRT backend refuses CPU instances ("TensorRT backend supports only GPU device",
        # https://github.com/triton-inference-server/server/issues/4696)
        raise ValueError(f"--kind {options.kind}: a TensorRT plan runs on the GPU only; use --kind gpu, or "
                         "--network python")
    if header.batch[0] > 1:
        # Triton forms batches of any size from 1 to max_batch_size (a single request is a batch of 1)
        raise ValueError(f"the engine's smallest batch is {header.batch[0]}, but Triton sends batches from 1 up; "
                         f"build it with --batch 1:{header.batch[1]}:{header.batch[2]}")


def write_repository(model, header: EngineHeader, engine_file: Path | None, payload: bytes, out: Path,
                     options: RepositoryOptions) -> list[Path]:
    """Write the four models into `out` (created if needed); each folder appears whole or not at all, and only
    folders an earlier export wrote are replaced."""
    check_servable(header, options)
    kind = model_kind(model, header.config)
    shapes = output_shapes(model, header)
    names = {step: f"{options.name}_{step}" for step in ("preprocess", "network", "postprocess")}
    check_replaceable(out, [options.name, *names.values()])
    out.mkdir(parents=True, exist_ok=True)
    written = []
    with tempfile.TemporaryDirectory(dir=out, prefix=".export-") as tmp:
        staged = Path(tmp)
        for step, folder in names.items():
            target = staged / folder
            (target / "1").mkdir(parents=True)
            Sidecar(step, options.network, kind, asdict(header), options.options).save(target / "zoo.json")
            (target / "config.pbtxt").write_text(step_config(step, folder, header, shapes, kind, options))
            if step == "network" and options.network == "plan":
                (target / "1" / "model.plan").write_bytes(payload)  # the raw plan: Triton refuses the zoo header
            else:
                if step == "network" and engine_file:
                    shutil.copyfile(engine_file, target / "1" / "model.engine")
                elif step == "network":  # built from weights in memory
                    write_engine(target / "1" / "model.engine", header, payload)
                cls = {"preprocess": "Preprocess", "network": "Network", "postprocess": "Postprocess"}[step]
                (target / "1" / "model.py").write_text(MODEL_PY.format(step=step, name=options.name, cls=cls))
        ensemble = staged / options.name
        (ensemble / "1").mkdir(parents=True)  # Triton wants a version folder even for an ensemble
        (ensemble / "config.pbtxt").write_text(ensemble_config(names, header, kind, options))
        Sidecar("ensemble", options.network, kind, asdict(header), options.options).save(ensemble / "zoo.json")
        check_replaceable(out, [options.name, *names.values()])  # again: the staging took time
        old = staged / ".replaced"
        old.mkdir()
        for folder in [options.name, *names.values()]:
            final = out / folder
            if final.exists():
                final.rename(old / folder)  # moved, then dropped with the staging folder
            (staged / folder).rename(final)
            written.append(final)
    return written


def write_pipeline_repository(model, header: EngineHeader, engine_file: Path | None, payload: bytes, out: Path,
                              options: RepositoryOptions) -> list[Path]:
    """A pipeline (several networks and python glue, zoo.engine.pipeline) as ONE python-backend model: encoded
    image in, `infer`'s record out; it runs the pipeline's engine file with the zoo runtime (steps.Pipeline)."""
    check_model_name(options.name)
    if options.network == "plan":
        raise ValueError(f"{model.name} is a pipeline of {len(model.stage_names)} networks joined by python glue: "
                         f"export it with --network python (one python model running its engine file)")
    check_replaceable(out, [options.name])
    out.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=out, prefix=".export-") as tmp:
        target = Path(tmp) / options.name
        (target / "1").mkdir(parents=True)
        Sidecar("pipeline", "python", "other", asdict(header), options.options).save(target / "zoo.json")
        if engine_file:
            shutil.copyfile(engine_file, target / "1" / "model.engine")
        else:
            write_engine(target / "1" / "model.engine", header, payload)
        (target / "1" / "model.py").write_text(MODEL_PY.format(step="pipeline", name=options.name, cls="Pipeline"))
        text = (f'name: "{options.name}"\nbackend: "python"\nmax_batch_size: {header.batch[2]}\n'
                + _io("input", [_tensor(IMAGE, "TYPE_STRING", [1])]) + _io("output", _result_outputs("other"))
                + (_batching(header, options) if options.dynamic_batching else "")
                + f"instance_group [ {{ count: {options.instances} kind: "
                  f"{'KIND_GPU' if options.kind == 'gpu' else 'KIND_CPU'} }} ]\n")
        (target / "config.pbtxt").write_text(text)
        final = out / options.name
        if final.exists():
            shutil.rmtree(final)
        target.rename(final)
    return [final]


# ----------------------------------------------------------------------------------------------------------------
# config.pbtxt


TRITON_TYPES = {np.dtype(np.float32): "TYPE_FP32", np.dtype(np.float16): "TYPE_FP16"}


def _dtype(precision: str) -> str:
    """The network input's type, from the one function that converts inputs (FP16 for fp16 and int8 networks)."""
    from zoo.engine.quantization import as_input
    return TRITON_TYPES[np.asarray(as_input(np.zeros(1, np.float32), precision)).dtype]


def quoted(text: str) -> str:
    """A protobuf text-format string: names from an engine header may hold quotes, backslashes or newlines."""
    out = []
    for ch in str(text):
        if ch in '"\\':
            out.append("\\" + ch)
        elif ord(ch) < 32 or ord(ch) == 127:
            out.append(f"\\{ord(ch):03o}")
        else:
            out.append(ch)
    return '"' + "".join(out) + '"'


def _tensor(name: str, dtype: str, dims) -> str:
    return f'  {{ name: {quoted(name)} data_type: {dtype} dims: [ {", ".join(str(d) for d in dims)} ] }}'


def _io(direction: str, tensors: list[str]) -> str:
    return f"{direction} [\n" + ",\n".join(tensors) + "\n]\n"


def _result_outputs(kind: str) -> list[str]:
    tensors = [_tensor(RECORD, "TYPE_STRING", [1])]
    if kind == "detect":
        tensors.append(_tensor(DETECTIONS, "TYPE_FP32", [-1, 6]))
    elif kind == "classify":
        tensors += [_tensor(TOP_CLASS_IDS, "TYPE_INT32", [-1]), _tensor(TOP_SCORES, "TYPE_FP32", [-1])]
    return tensors


def _batching(header: EngineHeader, options: RepositoryOptions) -> str:
    top = header.batch[2]
    preferred = [b for b in (options.preferred_batch or (header.batch[1], top)) if 1 <= b <= top]
    preferred = sorted(set(preferred))
    return ("dynamic_batching {\n"
            + (f"  preferred_batch_size: [ {', '.join(map(str, preferred))} ]\n" if preferred else "")
            + f"  max_queue_delay_microseconds: {options.max_queue_delay_us}\n}}\n")


def step_config(step: str, folder: str, header: EngineHeader, shapes: dict, kind: str,
                options: RepositoryOptions) -> str:
    input_dims = header.input_shape[1:]
    network_input = _tensor(header.input_name, _dtype(header.precision) if options.network == "plan"
                            else "TYPE_FP32", input_dims)
    network_outputs = [_tensor(name, dtype, dims) for name, (dims, dtype) in shapes.items()]
    text = f"name: {quoted(folder)}\n"
    if step == "network" and options.network == "plan":
        text += 'platform: "tensorrt_plan"\n'
    else:
        text += 'backend: "python"\n'
    text += f"max_batch_size: {header.batch[2]}\n"
    if step == "preprocess":
        text += _io("input", [_tensor(IMAGE, "TYPE_STRING", [1])])
        text += _io("output", [network_input, _tensor(CONTEXT, "TYPE_STRING", [1])])
    elif step == "network":
        text += _io("input", [network_input]) + _io("output", network_outputs)
    else:
        text += _io("input", network_outputs + [_tensor(CONTEXT, "TYPE_STRING", [1])])
        text += _io("output", _result_outputs(kind))
    # only the network gains from waiting for a batch; pre- and post-processing take whatever is queued
    if options.dynamic_batching:
        text += _batching(header, options) if step == "network" else "dynamic_batching { }\n"
    on_gpu = step == "network" and options.kind == "gpu"
    count = options.instances if step == "network" else 1
    text += f"instance_group [ {{ count: {count} kind: {'KIND_GPU' if on_gpu else 'KIND_CPU'} }} ]\n"
    return text


def ensemble_config(names: dict, header: EngineHeader, kind: str, options: RepositoryOptions) -> str:
    def step(model: str, inputs: dict, outputs: dict) -> str:
        maps = "".join(f"      input_map {{ key: {quoted(k)} value: {quoted(v)} }}\n" for k, v in inputs.items())
        maps += "".join(f"      output_map {{ key: {quoted(k)} value: {quoted(v)} }}\n" for k, v in outputs.items())
        return f"    {{\n      model_name: {quoted(model)}\n      model_version: -1\n{maps}    }}"

    network_in = {header.input_name: "network_input"}
    network_out = {name: f"network_output_{i}" for i, name in enumerate(header.outputs)}
    results = {RECORD: RECORD, **({DETECTIONS: DETECTIONS} if kind == "detect" else {}),
               **({TOP_CLASS_IDS: TOP_CLASS_IDS, TOP_SCORES: TOP_SCORES} if kind == "classify" else {})}
    steps = [step(names["preprocess"], {IMAGE: IMAGE}, {**network_in, CONTEXT: "context"}),
             step(names["network"], network_in, network_out),
             step(names["postprocess"], {**network_out, CONTEXT: "context"}, results)]
    return (f'name: {quoted(options.name)}\nplatform: "ensemble"\nmax_batch_size: {header.batch[2]}\n'
            + _io("input", [_tensor(IMAGE, "TYPE_STRING", [1])]) + _io("output", _result_outputs(kind))
            + "ensemble_scheduling {\n  step [\n" + ",\n".join(steps) + "\n  ]\n}\n")
