"""Pipelines: a model made of several networks and the glue between them; a single network is the one-stage case.

Every command (build, calibrate, infer, validate, bench, export, serve) goes through the stages of a model, so a
pipeline (MTCNN: P-Net -> R-Net -> O-Net; OCR: detector -> direction classifier -> recognizer) and a single
network take the same path. A single network is one stage named after its model; its engine file, runner and
records are exactly what they were before pipelines existed.

## What a pipeline is

    stage   = one network: a ZooModel that defines it (define, input_shape, input_name, reference_module,
              sample_input: the input `validate` compares it on), its weights, its configuration, and its
              optimization profile (batch range, and full shapes when more than the batch is dynamic)
    glue    = what runs between and around the networks: pre-processing of the images, cropping, resizing,
              NMS, decoding; it calls stage runners and knows nothing of backends
    records = one JSON-able dict per image, as for any model (ZooModel.records)

## Writing a new pipeline (subclass `Pipeline`)

    class OCR(Pipeline):
        name, summary = "ocr", "..."
        stage_names = ("det", "cls", "rec")           # the order stages are built, calibrated and validated in
        input_name = "images"                         # the pipeline's input: a list of decoded images

        def add_arguments(self, parser)               # build flags (profile limits); `--weights` is shared and is,
                                                      # for a pipeline, a folder holding each stage's file
        def load_stages(self, args) -> list[Stage]    # weights, configuration and profile of every stage, in
                                                      # stage_names order (one-line errors naming the file)
        def connect(self, runners, config, args)      # the glue: returns a callable images -> outputs, where
                                                      # runners[stage](batch) -> {output name: tensor}; outputs is
                                                      # {name: list with one item per image}
        def load_images(self, items, config, device)  # (images the glue takes, contexts), as ZooModel's
        def records(self, outputs, contexts, config, args)   # ZooModel's: one record per image
        def calibration_batches(self, stage, runners, images)  # INT8: the inputs `stage` sees in the pipeline,
                                                      # from FP32 runners of the stages before it
        def validate_end_to_end(self, runners, config, args) -> (text, ok)   # the whole pipeline against an
                                                      # independent reference (e.g. a pure PyTorch pipeline)
        def reference_pipeline(self, args, device)    # the same pipeline in PyTorch eager: images -> outputs
        def output_names(self) -> list[str]           # the glue's output names (default ["records"])
        def pipeline_config(self, stages, args) -> dict   # what the glue needs at run time, kept in the header
        def sample_input(self, config, batch, seed)   # `batch` images for bench

`add_infer_arguments`/`check_infer_arguments` are ZooModel's. Flags that the glue reads (thresholds, sizes) are
fixed when `connect` runs: at the start of `infer`, or of each `serve` worker.

## What the commands do with it

- build: every stage is defined and built with its own profile and precision, then all are written into ONE
  engine file (below). calibrate: stage by stage, each on `calibration_batches`, into ONE cache whose tensor names
  are `<stage>/<tensor>`. validate: every stage layer by layer against its reference module (the single-network
  table), then `validate_end_to_end` on the engines as built. infer, serve, bench: the pipeline's runner
  (`PipelineRunner`) is a Runner like any other, `run({input_name: images}) -> outputs`, and `sample_input`
  gives bench its images; `bench --compare-torch` times `reference_pipeline`. export onnx: one .onnx per stage,
  in a folder; export triton: one python-backend model (image in, record out) running the engine file.

## On disk

One file, the zoo's engine format (zoo.engine.engine_file) with a `stages` list in its header:

    header.stages = [{"name": "pnet", "bytes": N, "header": <that stage's own engine header>}, ...]
    payload       = the stages' payloads (TensorRT plans or reference payloads), concatenated in that order

The file's header says what the pipeline is (model, variant, backend, precision, configuration, its input and
outputs); each stage's header says what its network is, and is checked at load as a single engine's would be. A
single network's file has no `stages`: it is its own one stage.
"""
from __future__ import annotations

import argparse
from dataclasses import asdict, dataclass
from typing import Any, Callable, Iterable

import numpy as np
import torch

from wts.weight_map import WeightMap

from .engine_file import EngineFileError, EngineHeader
from .model import ZooModel
from .quantization import as_input


@dataclass
class Stage:
    """One network of a pipeline, ready to define and build."""
    name: str
    network: ZooModel
    weights: WeightMap
    config: dict
    batch: tuple[int, int, int] = (1, 1, 8)       # optimization profile over the batch
    shapes: dict | None = None                    # {input name: (min, opt, max) full shapes}, when more is dynamic

    @property
    def profile(self) -> dict | None:
        """The full-shape profile as the engine header records it."""
        if not self.shapes:
            return None
        low, opt, high = self.shapes[self.network.input_name]
        return {"min": list(low), "opt": list(opt), "max": list(high)}


class Pipeline(ZooModel):
    """A model of several networks. See the module docstring for the contract."""
    stage_names: tuple[str, ...] = ()
    input_name = "images"

    def load_stages(self, args: argparse.Namespace) -> list[Stage]:
        raise NotImplementedError

    def pipeline_config(self, stages: list[Stage], args: argparse.Namespace) -> dict:
        """The pipeline's configuration in the engine header (the stages' own are in their headers)."""
        return {"variant": self.name}

    def connect(self, runners: dict[str, "StageRunner"], config: dict,
                args: argparse.Namespace) -> Callable[[list], dict[str, list]]:
        raise NotImplementedError

    def calibration_batches(self, stage: str, runners: dict[str, "StageRunner"],
                            images: list[np.ndarray]) -> Iterable[np.ndarray]:
        raise NotImplementedError(f"{self.name}: no INT8 calibration data for stage {stage}")

    def validate_end_to_end(self, runners: dict[str, "StageRunner"], config: dict,
                            args: argparse.Namespace) -> tuple[str, bool]:
        return "", True

    def reference_pipeline(self, args: argparse.Namespace, device: str) -> Callable[[list], dict[str, list]]:
        """The whole pipeline in PyTorch eager (images -> outputs): what `bench --compare-torch` times."""
        raise NotImplementedError(f"{self.name} has no PyTorch pipeline to compare with")

    def output_names(self) -> list[str]:
        """Names of the glue's outputs (the pipeline header's `outputs`)."""
        return ["records"]

    # a pipeline has no single network: the ZooModel methods of one network do not apply to it
    def input_shape(self, config: dict) -> tuple[int, ...]:
        return (-1, -1, 3)  # images of any size, height x width x channels

    def define(self, net, weights, config, x):
        raise TypeError(f"{self.name} is a pipeline of {len(self.stage_names)} networks; define its stages")


def single_stage(model: ZooModel, weights: WeightMap, config: dict,
                 batch: tuple[int, int, int] = (1, 1, 8)) -> Stage:
    """A single network as the one stage of its own pipeline."""
    return Stage(model.name, model, weights, config, batch)


def is_pipeline(model: ZooModel) -> bool:
    return isinstance(model, Pipeline)


# ----------------------------------------------------------------------------------------------------------------
# running


class StageRunner:
    """One stage's engine as the glue calls it: a float32 batch -> {output name: tensor on the batch's device}.
    The batch is cast to the stage's input precision here, so the glue never knows how a stage was built."""

    def __init__(self, header: EngineHeader, runner):
        self.header, self.runner = header, runner

    @property
    def device(self) -> str:
        return self.runner.device

    @property
    def max_batch(self) -> int:
        return self.header.batch[2]

    def __call__(self, batch: torch.Tensor) -> dict[str, torch.Tensor]:
        out = self.runner.run({self.header.input_name: as_input(batch, self.header.precision)})
        device = batch.device if isinstance(batch, torch.Tensor) else "cpu"
        return {name: out[name].to(device) for name in self.header.outputs}


class PipelineRunner:
    """A pipeline's engine as a Runner: `run({input_name: images}) -> {output: list per image}`."""

    def __init__(self, glue: Callable[[list], dict[str, list]], stages: dict[str, StageRunner], input_name: str):
        self.glue, self.stages, self.input_name = glue, stages, input_name

    @property
    def device(self) -> str:
        return next(iter(self.stages.values())).device

    def run(self, feeds: dict) -> dict[str, Any]:
        return self.glue(feeds[self.input_name])


# ----------------------------------------------------------------------------------------------------------------
# the engine file of a pipeline: one header with its stages' headers, the stages' payloads concatenated


def pack_stages(header: EngineHeader, built: list[tuple[str, EngineHeader, bytes]]) -> tuple[EngineHeader, bytes]:
    """The pipeline's header (with `stages`) and its payload from each stage's (name, header, payload)."""
    header.stages = [{"name": name, "bytes": len(payload), "header": asdict(stage_header)}
                     for name, stage_header, payload in built]
    return header, b"".join(payload for _, _, payload in built)


def unpack_stages(path, header: EngineHeader, payload: bytes) -> dict[str, tuple[EngineHeader, bytes]]:
    """{stage name: (its header, its payload)}; a single network's file is its own one stage."""
    if header.stages is None:
        return {header.model: (header, payload)}
    stages, offset = {}, 0
    if not isinstance(header.stages, list):
        raise EngineFileError(f"{path}: damaged engine header (stages is not a list)")
    for entry in header.stages:
        try:
            name, size, fields = entry["name"], entry["bytes"], entry["header"]
            stage_header = EngineHeader(**fields)
        except (KeyError, TypeError) as e:
            raise EngineFileError(f"{path}: damaged engine header (a stage entry: {str(e)[:100]})") from None
        if not isinstance(name, str) or not isinstance(size, int) or size < 0 or name in stages:
            raise EngineFileError(f"{path}: damaged engine header (stage {str(name)[:40]!r})")
        if stage_header.stages is not None or stage_header.backend != header.backend:
            raise EngineFileError(f"{path}: damaged engine header (stage {name} nests stages or names another "
                                  f"backend)")
        stages[name] = (stage_header, payload[offset:offset + size])
        offset += size
    if offset != len(payload):
        raise EngineFileError(f"{path}: damaged engine file (its stages hold {offset} bytes, the payload has "
                              f"{len(payload)})")
    return stages
