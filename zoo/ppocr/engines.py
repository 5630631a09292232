"""PP-OCR's three engines: building them into a folder, opening them, and handing them to the pipeline as Stages.

An engine folder holds det.engine, cls.engine and rec.engine, each a zoo engine file (model "ppocr", variant e.g.
"v5-det"), plus alphabet.txt (the recognizer's CTC classes, one per line, blank first). Profiles: the detector over
height and width (32 px up to the pipeline's MAX_DET_SIDE), the recognizer over batch and width (48 x 32 up to
MAX_REC_WIDTH), the classifier over batch; batches are the pipeline's 6.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np

from zoo.engine.backends import BuildOptions, ReferenceBackend
from zoo.engine.engine_file import EngineHeader, write_engine
from zoo.engine.files import write_text_atomic
from zoo.engine.precision import Precision
from zoo.engine.quantization import as_input
from zoo.engine.workflow import UserError, define_network, open_engine

from .model import PPOCRModel
from .pipeline import MAX_DET_SIDE, MAX_REC_WIDTH, VARIANTS, Stages
from .stages import STAGES, alphabet, load_stage_weights, stage_files

ALPHABET_FILE = "alphabet.txt"


def profile(stage: str, variant: str) -> tuple[tuple, tuple, tuple]:
    batch = VARIANTS[variant].batch
    if stage == "det":
        side = VARIANTS[variant].limit_side // 32 * 32
        return (1, 3, 32, 32), (1, 3, side, side), (1, 3, MAX_DET_SIDE, MAX_DET_SIDE)
    if stage == "rec":
        return (1, 3, 48, 32), (batch, 3, 48, 320), (batch, 3, 48, MAX_REC_WIDTH)
    return (1, 3, 48, 192), (batch, 3, 48, 192), (batch, 3, 48, 192)


def build_stage(stage: str, path: Path, variant: str, backend, precision: Precision) -> tuple[EngineHeader, bytes]:
    model = PPOCRModel()
    weights, config = load_stage_weights(path, stage, variant)
    net, outputs = define_network(model, backend, weights, config, precision)
    low, opt, high = profile(stage, variant)
    batch = (low[0], opt[0], high[0])
    payload = backend.build(net, BuildOptions(model.input_name, batch, shapes={model.input_name: (low, opt, high)}))
    header = EngineHeader(model=model.name, variant=f"{variant}-{stage}", backend=backend.name,
                          input_name=model.input_name, input_shape=[-1, *model.input_shape(config)],
                          batch=list(batch), precision=precision.mode, outputs=outputs,
                          config={**config, "weights": str(path)},
                          profile={"min": list(low), "opt": list(opt), "max": list(high)}, **backend.describe())
    return header, payload


def _precision(stage: str, mode: str, scales: dict | None) -> Precision:
    if mode != "int8":
        return Precision(mode)
    if not scales or stage not in scales:
        raise UserError(f"--precision int8 needs calibration scales for the {stage} network (run `calibrate`)")
    return Precision("int8", scales[stage])


def _alphabet(variant: str, weights_dir: Path | None, files: dict[str, Path]) -> list[str]:
    from .model import config_from_weights
    _, dict_file = stage_files(variant, weights_dir)
    weights, _ = load_stage_weights(files["rec"], "rec", variant)
    return alphabet(files["rec"], dict_file, config_from_weights(weights, variant, "rec")["classes"])


def build_all(variant: str, weights_dir: Path | None, backend, mode: str = "fp32", scales: dict | None = None):
    """{stage: (header, payload)} and the alphabet, everything in memory."""
    files, _ = stage_files(variant, weights_dir)
    built = {stage: build_stage(stage, files[stage], variant, backend, _precision(stage, mode, scales))
             for stage in STAGES}
    return built, _alphabet(variant, weights_dir, files)


def build_folder(folder: Path, variant: str, weights_dir: Path | None, backend, mode: str = "fp32",
                 scales: dict | None = None) -> dict[str, EngineHeader]:
    """All three engines and the alphabet into `folder`, each file written atomically after everything is built."""
    built, characters = build_all(variant, weights_dir, backend, mode, scales)
    folder.mkdir(parents=True, exist_ok=True)
    for stage, (header, payload) in built.items():
        write_engine(folder / f"{stage}.engine", header, payload)
    write_text_atomic(folder / ALPHABET_FILE, "\n".join(characters[1:-1]) + "\n")
    return {stage: header for stage, (header, _) in built.items()}


class StageRunner:
    """One engine as the pipeline calls it: float32 numpy batch -> float32 numpy output."""

    def __init__(self, header: EngineHeader, runner):
        self.header, self.runner = header, runner

    def __call__(self, x: np.ndarray) -> np.ndarray:
        import torch
        batch = torch.from_numpy(np.ascontiguousarray(x, np.float32))
        out = self.runner.run({self.header.input_name: as_input(batch, self.header.precision)})
        return out[self.header.outputs[0]].float().cpu().numpy()


def stages_from_runners(runners: dict[str, StageRunner], characters: list[str]) -> Stages:
    return Stages(runners["det"], runners["cls"], runners["rec"], characters)


def in_memory(variant: str, weights_dir: Path | None, backend, mode: str = "fp32", scales: dict | None = None):
    built, characters = build_all(variant, weights_dir, backend, mode, scales)
    runners = {stage: StageRunner(header, backend.load(payload)) for stage, (header, payload) in built.items()}
    return stages_from_runners(runners, characters), runners


def open_folder(folder: Path):
    """(Stages, {stage: StageRunner}, variant) of an engine folder written by build_folder."""
    if not folder.is_dir():
        raise UserError(f"--engine {folder}: not a folder (build writes det.engine, cls.engine, rec.engine into one)")
    model, runners, variants = PPOCRModel(), {}, set()
    for stage in STAGES:
        path = folder / f"{stage}.engine"
        if not path.is_file():
            raise UserError(f"--engine {folder}: no {stage}.engine in it (run `python -m zoo.ppocr build -o "
                            f"{folder}`)")
        header, runner, _ = open_engine(model, path)
        variant, _, held = header.variant.partition("-")
        if held != stage:
            raise UserError(f"{path}: holds the {held or header.variant} network, not {stage}")
        variants.add(variant)
        runners[stage] = StageRunner(header, runner)
    if len(variants) != 1:
        raise UserError(f"--engine {folder}: engines of different variants ({', '.join(sorted(variants))})")
    path = folder / ALPHABET_FILE
    if not path.is_file():
        raise UserError(f"--engine {folder}: no {ALPHABET_FILE} in it")
    characters = ["blank"] + path.read_text(encoding="utf-8").splitlines() + [" "]
    classes = runners["rec"].header.config.get("classes")
    if len(characters) != classes:
        raise UserError(f"{path}: {len(characters) - 2} characters for a recognizer of {classes} classes")
    return stages_from_runners(runners, characters), runners, variants.pop()


def is_reference(runners: dict[str, StageRunner]) -> bool:
    return all(r.header.backend == ReferenceBackend.name for r in runners.values())
