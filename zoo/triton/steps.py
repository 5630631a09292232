"""The python-backend models of an exported ensemble: pre-processing, the network (zoo runtime), post-processing.

Each step's `model.py` in the repository is three lines that import one of these classes as `TritonPythonModel`;
its folder holds `zoo.json` (the engine header and the export's options). Pre- and post-processing are the model's
own `load_images` and `records`, the functions `infer` calls, so the ensemble answers what `infer` writes.
Dynamic batching hands `execute` several requests at once: each step handles them in one call.
"""
from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
import torch

from . import context as contexts
from .repository import CONTEXT, IMAGE, Sidecar, outputs_of_record

try:  # present inside tritonserver's python backend only
    import triton_python_backend_utils as pb_utils
except ImportError:  # pragma: no cover - importing this module elsewhere (docs, tests of the helpers)
    pb_utils = None


class _Step:
    def initialize(self, args: dict) -> None:
        from zoo.registry import family
        # one thread per step instance; more instances (instance_group count) use more cores. Measured on the
        # 2-core machine while busy: yolov5n at 128 took 2.8 s per call with torch's 2 threads, 30 ms with one,
        # since OpenMP threads beyond the free cores spin against each other.
        torch.set_num_threads(1)
        self.sidecar = Sidecar.load(Path(args["model_repository"]) / "zoo.json")
        self.header = self.sidecar.engine_header()
        self.model = family(self.header.model).load()
        self.config = self.header.config

    def execute(self, requests):
        responses = []
        for request, result in zip(requests, self.run([self.inputs(r) for r in requests])):
            if isinstance(result, Exception):
                responses.append(pb_utils.InferenceResponse(output_tensors=[], error=pb_utils.TritonError(
                    str(result))))
            else:
                responses.append(pb_utils.InferenceResponse(output_tensors=[
                    pb_utils.Tensor(name, value) for name, value in result.items()]))
        return responses

    def inputs(self, request) -> dict:
        raise NotImplementedError

    def run(self, inputs: list[dict]) -> list:
        """One result per request: {output name: array} or an Exception (that request's error)."""
        raise NotImplementedError

    def finalize(self) -> None:
        pass


class Preprocess(_Step):
    """Encoded image bytes -> the network input and each image's context (JSON)."""

    def inputs(self, request) -> dict:
        parameters = json.loads(request.parameters() or "{}")
        data = pb_utils.get_input_tensor_by_name(request, IMAGE).as_numpy().reshape(-1)
        return {"data": list(data), "name": str(parameters.get("file", "upload"))}

    def run(self, inputs):
        return [preprocess(self.model, self.config, self.sidecar, item["data"], item["name"]) for item in inputs]


class Network(_Step):
    """The zoo runtime on the engine file in this folder: every request of a dynamic batch in one engine call."""

    def initialize(self, args):
        super().initialize(args)
        from zoo.engine.engines import open_engine
        _, self.runner, _ = open_engine(self.model, Path(args["model_repository"]) / args["model_version"] /
                                        "model.engine")

    def inputs(self, request):
        return {"batch": pb_utils.get_input_tensor_by_name(request, self.header.input_name).as_numpy()}

    def run(self, inputs):
        from zoo.engine.quantization import as_input
        sizes = [len(item["batch"]) for item in inputs]
        batch = np.concatenate([item["batch"] for item in inputs])
        outputs = self.runner.run({self.header.input_name: as_input(batch, self.header.precision)})
        arrays = {name: value.float().cpu().numpy() for name, value in outputs.items()
                  if name in self.header.outputs}
        starts = np.cumsum([0] + sizes)
        return [{name: np.ascontiguousarray(value[a:b]) for name, value in arrays.items()}
                for a, b in zip(starts[:-1], starts[1:])]


class Postprocess(_Step):
    """Network outputs and contexts -> `infer`'s record (JSON) and its numbers as tensors."""

    def inputs(self, request):
        got = {name: pb_utils.get_input_tensor_by_name(request, name).as_numpy() for name in self.header.outputs}
        got[CONTEXT] = pb_utils.get_input_tensor_by_name(request, CONTEXT).as_numpy().reshape(-1)
        return got

    def run(self, inputs):
        options = argparse.Namespace(**self.sidecar.options)
        results = []
        for item in inputs:
            try:
                outputs = {name: torch.from_numpy(item[name]) for name in self.header.outputs}
                context = [contexts.loads(c) for c in item[CONTEXT]]
                records = self.model.records(outputs, context, self.config, options)
                results.append(outputs_of_record(self.sidecar.kind, records))
            except Exception as e:  # noqa: BLE001 - one request's failure is that request's error
                results.append(e)
        return results


class Pipeline(_Step):
    """A whole pipeline (zoo.engine.pipeline) in one step: encoded images -> `infer`'s records, the requests of a
    dynamic batch in one call of the pipeline's glue."""

    def initialize(self, args):
        super().initialize(args)
        from zoo.engine.engines import connect, open_stages
        self.options = argparse.Namespace(**self.sidecar.options)
        header, stages, _ = open_stages(self.model, Path(args["model_repository"]) / args["model_version"] /
                                        "model.engine")
        self.runner = connect(self.model, header, stages, self.options)

    def inputs(self, request) -> dict:
        return Preprocess.inputs(self, request)

    def run(self, inputs):
        from zoo.vision.images import decode_image
        results = []
        for item in inputs:
            try:
                decoded = [decode_image(bytes(d)) for d in item["data"]]
                bad = [reason for image, reason in decoded if image is None]
                if bad:
                    raise ValueError(f"{item['name']}: {bad[0]}")
                images, context = self.model.load_images([(item["name"], image, None) for image, _ in decoded],
                                                         self.config)
                outputs = self.runner.run({self.header.input_name: images})
                results.append(outputs_of_record("other", self.model.records(outputs, context, self.config,
                                                                             self.options)))
            except Exception as e:  # noqa: BLE001 - one request's failure is that request's error
                results.append(e)
        return results


def preprocess(model, config: dict, sidecar: Sidecar, data: list, name: str):
    """The model's own `load_images` on decoded bytes; a bad image is this request's error, not the model's."""
    from zoo.engine.quantization import as_input
    from zoo.vision.images import decode_image
    decoded = [decode_image(bytes(d)) for d in data]
    bad = [reason for image, reason in decoded if image is None]
    if bad:
        return ValueError(f"{name}: {bad[0]}")
    batch, context = model.load_images([(name, image, None) for image, _ in decoded], config)
    batch = batch.cpu().numpy() if isinstance(batch, torch.Tensor) else np.asarray(batch)
    if sidecar.network == "plan":  # the plan's input type; the python network converts for itself
        batch = np.asarray(as_input(batch, sidecar.header["precision"]))
    return {sidecar.header["input_name"]: batch,
            CONTEXT: np.array([contexts.dumps(c).encode() for c in context], dtype=object).reshape(-1, 1)}
