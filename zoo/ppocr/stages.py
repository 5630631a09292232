"""Where PP-OCR's weights come from and the networks the pipeline calls: per variant, the trained files of the
project's assets (or a --weights-dir with det, cls and rec files of the same architectures), their CTC alphabet,
and three kinds of stage runners: the zoo's engines, ONNX Runtime on the original files (the packages' own
executor: the baseline), and the PyTorch reference modules.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np

from wts.weight_map import WeightMap
from zoo.engine.checkpoint import CheckpointError
from zoo.engine.errors import UserError

from .pipeline import Stages

STAGES = ("det", "cls", "rec")
ASSET_NAMES = {"v5": {"det": "ppocrv5_det", "cls": "ppocrv5_cls", "rec": "ppocrv5_rec", "dict": "ppocrv5_dict"},
               "v4": {"det": "ppocrv4_det", "cls": "ppocrv4_cls", "rec": "ppocrv4_rec"}}
MAX_DICT_BYTES = 4 << 20   # PP-OCR's largest alphabets are ~100 KB


def stage_files(variant: str, weights_dir: Path | None) -> tuple[dict[str, Path], Path | None]:
    """{stage: weights file}, and the alphabet file (None: the recognizer's ONNX metadata holds it)."""
    if weights_dir is None:
        from zoo import assets
        names = ASSET_NAMES[variant]
        try:
            files = {s: assets.asset_path(names[s]) for s in STAGES}
            return files, assets.asset_path(names["dict"]) if "dict" in names else None
        except assets.AssetMissing as e:
            raise UserError(str(e)) from None
    if not weights_dir.is_dir():
        raise UserError(f"--weights-dir {weights_dir}: not a folder")
    files = {}
    for stage in STAGES:
        found = [p for p in (weights_dir / f"{stage}.onnx", weights_dir / f"{stage}.wts") if p.is_file()]
        if not found:
            raise UserError(f"--weights-dir {weights_dir}: no {stage}.onnx or {stage}.wts in it")
        files[stage] = found[0]
    alphabet = weights_dir / "dict.txt"
    return files, alphabet if alphabet.is_file() else None


def load_stage_weights(path: Path, stage: str, variant: str) -> tuple[WeightMap, dict]:
    """Structured weights and configuration of one stage from a PP-OCR ONNX file or a .wts file."""
    from .config import config_from_weights
    try:
        if path.suffix == ".onnx":
            from .onnx_import import import_paddle_onnx
            state, _ = import_paddle_onnx(str(path), stage)
            weights = WeightMap(state, str(path))
        else:
            import wts
            weights = WeightMap(wts.load(str(path)), str(path))
        return weights, config_from_weights(weights, variant, stage)
    except (CheckpointError, ValueError, OSError) as e:  # wts.WtsError is a ValueError
        raise UserError(str(e).splitlines()[0] if str(e) else f"{path}: {type(e).__name__}") from None


def alphabet(rec_file: Path, dict_file: Path | None, classes: int) -> list[str]:
    """CTC classes: blank, the dictionary's characters (a file, one per line, or the recognizer's ONNX metadata
    'character'), then a space; checked against the recognizer's class count."""
    if dict_file is not None:
        if dict_file.stat().st_size > MAX_DICT_BYTES:
            raise UserError(f"{dict_file}: larger than a character dictionary can be ({MAX_DICT_BYTES} bytes)")
        try:
            text = dict_file.read_text(encoding="utf-8")
        except UnicodeDecodeError:
            raise UserError(f"{dict_file}: not UTF-8 text") from None
        source = str(dict_file)
    else:
        if rec_file.suffix != ".onnx":
            raise UserError(f"{rec_file}: a .wts recognizer needs its dictionary beside it as dict.txt")
        from zoo.engine.onnx_weights import read_onnx_model
        try:
            meta = {p.key: p.value for p in read_onnx_model(str(rec_file)).metadata_props}
        except CheckpointError as e:
            raise UserError(str(e)) from None
        if "character" not in meta:
            raise UserError(f"{rec_file}: no 'character' metadata and no dict.txt: the alphabet is unknown")
        text, source = meta["character"], f"{rec_file} (metadata 'character')"
    characters = ["blank"] + text.splitlines() + [" "]
    if len(characters) != classes:
        raise UserError(f"{source}: {len(characters) - 2} characters, but the recognizer has {classes} classes "
                        f"(expected {classes - 2} characters)")
    return characters


def onnx_runtime_stages(variant: str, weights_dir: Path | None = None, threads: int = 0) -> Stages:
    """The original files under ONNX Runtime: the packages' own executor, the baseline of tests and bench."""
    import onnxruntime as ort
    files, dict_file = stage_files(variant, weights_dir)
    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    sessions = {s: ort.InferenceSession(str(files[s]), options, providers=["CPUExecutionProvider"])
                for s in STAGES}

    def runner(session):
        name = session.get_inputs()[0].name
        return lambda x: session.run(None, {name: np.ascontiguousarray(x, np.float32)})[0]

    classes = sessions["rec"].get_outputs()[0].shape[-1]
    return Stages(runner(sessions["det"]), runner(sessions["cls"]), runner(sessions["rec"]),
                  alphabet(files["rec"], dict_file, classes))


def reference_stages(variant: str, weights_dir: Path | None = None) -> Stages:
    """The PyTorch reference modules."""
    import torch

    from zoo.engine.model import load_state_into

    from . import reference as ref
    files, dict_file = stage_files(variant, weights_dir)
    modules = {}
    for stage in STAGES:
        weights, config = load_stage_weights(files[stage], stage, variant)
        modules[stage] = load_state_into(ref.STAGES[stage](config), weights)

    def runner(module):
        def run(x):
            with torch.no_grad():
                return module(torch.from_numpy(np.ascontiguousarray(x, np.float32))).numpy()
        return run

    classes = modules["rec"].fc.out_features
    return Stages(runner(modules["det"]), runner(modules["cls"]), runner(modules["rec"]),
                  alphabet(files["rec"], dict_file, classes))
