"""MTCNN's three engines: building them into a folder, opening them, and joining them into a Cascade.

An engine folder holds pnet.engine, rnet.engine and onet.engine, each a zoo engine file (model "mtcnn", variant
the stage). P-Net's engine has one optimization profile over height and width, so it serves every pyramid level;
R-Net's and O-Net's have a batch profile, and the cascade feeds them crops in chunks of at most its maximum.
"""
from __future__ import annotations

from pathlib import Path

import torch

from zoo.engine.backends import BuildOptions, ReferenceBackend
from zoo.engine.engine_file import EngineHeader, write_engine
from zoo.engine.precision import Precision
from zoo.engine.quantization import as_input, load_cache
from zoo.engine.workflow import UserError, define_network, open_engine

from .cascade import Cascade, CascadeParams
from .model import MTCNNModel, load_stage_weights
from .nets import OUTPUTS, STAGES


def pnet_profile(max_side: int, min_face: int) -> tuple[tuple, tuple, tuple]:
    """P-Net's (min, opt, max) input shapes: from 12x12 up to the first pyramid level of a max_side photo."""
    top = int(max_side * 12.0 / min_face + 1)
    opt = min(top, 320)
    return (1, 3, 12, 12), (1, 3, opt, opt), (1, 3, top, top)


def stage_precision(stage: str, mode: str, calib: Path | None) -> Precision:
    """fp32/fp16, or int8 with the scales of `<calib>/<stage>.calib` (written by tools/mtcnn_int8.py)."""
    if mode != "int8":
        if calib is not None:
            raise UserError("--calib applies to --precision int8 only")
        return Precision(mode)
    if calib is None:
        raise UserError("--precision int8 needs --calib FOLDER with pnet.calib, rnet.calib, onet.calib "
                        "(tools/mtcnn_int8.py --calib-out writes them)")
    path = calib / f"{stage}.calib"
    if not path.is_file():
        raise UserError(f"--calib {calib}: no {stage}.calib in it")
    return Precision("int8", load_cache(path, "mtcnn", stage).scales)


def build_stage(model: MTCNNModel, stage: str, weights_dir: Path | None, backend, precision: Precision,
                max_side: int = 1920, min_face: int = 20, max_batch: int = 256) -> tuple[EngineHeader, bytes]:
    weights, config = load_stage_weights(model, weights_dir, stage)
    net, outputs = define_network(model, backend, weights, config, precision)
    shape = [-1, *model.input_shape(config)]
    if stage == "pnet":
        low, opt, high = pnet_profile(max_side, min_face)
        batch, profile = (1, 1, 1), {"min": list(low), "opt": list(opt), "max": list(high)}
        shapes = {model.input_name: (low, opt, high)}
    else:
        batch, profile, shapes = (1, min(64, max_batch), max_batch), None, None
    payload = backend.build(net, BuildOptions(model.input_name, batch, shapes=shapes))
    header = EngineHeader(model=model.name, variant=stage, backend=backend.name, input_name=model.input_name,
                          input_shape=shape, batch=list(batch), precision=precision.mode, outputs=outputs,
                          config={**config, "weights": weights.source}, profile=profile, **backend.describe())
    return header, payload


def build_folder(folder: Path, weights_dir: Path | None, backend, mode: str = "fp32", calib: Path | None = None,
                 **limits) -> dict[str, EngineHeader]:
    """All three engines into `folder` (each file written atomically)."""
    model = MTCNNModel()
    built = {stage: build_stage(model, stage, weights_dir, backend, stage_precision(stage, mode, calib), **limits)
             for stage in STAGES}  # everything built before anything is written
    for stage, (header, payload) in built.items():
        write_engine(folder / f"{stage}.engine", header, payload)
    return {stage: header for stage, (header, _) in built.items()}


class StageRunner:
    """One network as the cascade calls it: a float32 batch on the runner's device -> {"prob", "reg", ...}."""

    def __init__(self, header: EngineHeader, runner):
        self.header, self.runner = header, runner
        self.names = OUTPUTS[header.variant]

    @property
    def device(self) -> str:
        return self.runner.device

    def __call__(self, batch: torch.Tensor) -> dict[str, torch.Tensor]:
        out = self.runner.run({self.header.input_name: as_input(batch, self.header.precision)})
        return {name: out[tensor].to(batch.device) for name, tensor in zip(self.names, self.header.outputs)}


def open_folder(folder: Path, choice: str = "auto") -> dict[str, StageRunner]:
    if not folder.is_dir():
        raise UserError(f"--engine {folder}: not a folder (build writes pnet.engine, rnet.engine, onet.engine "
                        f"into one)")
    model, runners = MTCNNModel(), {}
    for stage in STAGES:
        path = folder / f"{stage}.engine"
        if not path.is_file():
            raise UserError(f"--engine {folder}: no {stage}.engine in it (run `python -m zoo.mtcnn build -o "
                            f"{folder}`)")
        header, runner, _ = open_engine(model, path, choice=choice)
        if header.variant != stage:
            raise UserError(f"{path}: holds the {header.variant} network, not {stage}")
        runners[stage] = StageRunner(header, runner)
    return runners


def in_memory(weights_dir: Path | None, backend, mode: str = "fp32", calib: Path | None = None,
              **limits) -> dict[str, StageRunner]:
    """The three networks built and loaded without files."""
    model, runners = MTCNNModel(), {}
    for stage in STAGES:
        header, payload = build_stage(model, stage, weights_dir, backend, stage_precision(stage, mode, calib),
                                      **limits)
        runners[stage] = StageRunner(header, backend.load(payload))
    return runners


def make_cascade(runners: dict[str, StageRunner], params: CascadeParams = CascadeParams(),
                 device: str | None = None) -> Cascade:
    """The cascade on the runners' device (or on `device`: e.g. the GPU for crops and NMS around CPU runners)."""
    max_batch = min(runners[s].header.batch[2] for s in ("rnet", "onet"))
    return Cascade(runners, device or runners["pnet"].device, params, max_batch)


def is_reference(runners: dict[str, StageRunner]) -> bool:
    return all(r.header.backend == ReferenceBackend.name for r in runners.values())
