"""MTCNN as a zoo pipeline: P-Net, R-Net and O-Net (three stages, one engine file) joined by the cascade.

`MTCNNNetwork` is the ZooModel of each network (configuration {"variant": "pnet" | "rnet" | "onet"}); `MTCNN` is
the pipeline the shared commands run (zoo.engine.pipeline): its stages, their optimization profiles, the cascade
as glue (cascade.py), the records, the INT8 calibration inputs of each stage, and the end-to-end check against a
pure PyTorch cascade (validation.py).
"""
from __future__ import annotations

import argparse
from pathlib import Path

import cv2
import numpy as np
import torch

from wts.weight_map import WeightMap
from zoo.engine.model import ZooModel, load_state_into, readable_images
from zoo.engine.pipeline import Pipeline, Stage, StageRunner
from zoo.engine.errors import UserError
from zoo.engine.flags import bounded

from .cascade import Cascade, CascadeParams, Faces, crop_regions, pyramid_scales
from .nets import CROP_SIZE, DEFINE, MODULES, OUTPUTS, STAGES
from .resample import AreaSampler
from .torch_cascade import detect_faces
from .validation import compare_cascades, format_cascade_rows, validation_input

# the first key of each network that the other two lack: a file of another stage is named as such
SIGNATURE = {"pnet": "conv4_1.weight", "rnet": "dense5_1.weight", "onet": "dense6_3.weight"}
DEFAULT_PHOTOS = ("astronaut", "grace_hopper", "chelsea", "coffee", "china")


class MTCNNNetwork(ZooModel):
    """One of the three networks."""
    name = "mtcnn"

    def config_from_weights(self, weights: WeightMap, args=None, stage: str | None = None) -> dict:
        """{"variant": the network these weights are for}; with `stage`, checked to be that one."""
        found = [s for s, key in SIGNATURE.items() if key in weights]
        if stage is None:
            if len(found) != 1:
                raise ValueError(f"{weights.source}: not the weights of an MTCNN network (expected one of "
                                 f"{sorted(SIGNATURE.values())} among its keys)")
            stage = found[0]
        elif found != [stage]:
            what = f"the {found[0]} weights" if len(found) == 1 else "not MTCNN weights"
            raise ValueError(f"{weights.source}: {what}, but {stage} weights were expected (key "
                             f"{SIGNATURE[stage]!r} is missing)")
        return {"variant": stage}

    def reference_module(self, config: dict) -> torch.nn.Module:
        return MODULES[config["variant"]]()

    def input_shape(self, config: dict) -> tuple[int, ...]:
        stage = config["variant"]
        return (3, -1, -1) if stage == "pnet" else (3, CROP_SIZE[stage], CROP_SIZE[stage])

    def sample_input(self, config: dict, batch: int, seed: int = 0) -> np.ndarray:
        """Real inputs (validation.validation_input): a pyramid level or crops of the astronaut photo."""
        return validation_input(config["variant"], seed)

    def define(self, net, weights: WeightMap, config: dict, x) -> list:
        return DEFINE[config["variant"]](net, weights, x)


NETWORK = MTCNNNetwork()


def _thresholds(text: str) -> tuple[float, float, float]:
    try:
        values = tuple(float(v) for v in text.split(","))
    except ValueError:
        values = ()
    if len(values) != 3 or not all(0 <= v <= 1 for v in values):
        raise argparse.ArgumentTypeError(f"thresholds {text!r} must be three probabilities P,R,O (e.g. 0.6,0.7,0.7)")
    return values


class MTCNN(Pipeline):
    name = "mtcnn"
    summary = ("MTCNN face detector (facenet-pytorch's trained P-Net, R-Net, O-Net): an image pyramid and a "
               "three-stage cascade, face boxes and five landmarks")
    stage_names = STAGES

    # --- stages
    def add_arguments(self, parser: argparse.ArgumentParser) -> None:
        for action in parser._actions:  # the shared --weights is, for a pipeline, a folder of its networks
            if action.dest == "weights":
                action.help = ("folder with pnet.pt, rnet.pt, onet.pt (facenet-pytorch's files; .pth and .wts "
                               "read too); default: the trained weights the project's setup installs")
        parser.add_argument("--max-side", type=bounded(int, 12, 16384), default=1920,
                            help="longest photo side P-Net's height/width profile serves (default 1920)")
        parser.add_argument("--min-face", type=bounded(int, 12, 16384), default=20,
                            help="smallest face in pixels; with --max-side it sizes P-Net's profile (default 20)")
        parser.add_argument("--max-crops", type=bounded(int, 1, 4096), default=256,
                            help="R-Net/O-Net crops per run: their batch profile's max (default 256)")

    def load_stages(self, args) -> list[Stage]:
        stages = []
        for stage in STAGES:
            weights, config = load_stage_weights(getattr(args, "weights", None), stage)
            if stage == "pnet":
                stages.append(Stage(stage, NETWORK, weights, config, (1, 1, 1),
                                    {NETWORK.input_name: pnet_profile(args.max_side, args.min_face)}))
            else:
                stages.append(Stage(stage, NETWORK, weights, config, (1, min(64, args.max_crops), args.max_crops)))
        return stages

    def pipeline_config(self, stages: list[Stage], args) -> dict:
        return {"variant": self.name, "min_face": args.min_face, "max_side": args.max_side,
                "weights": {s.name: s.weights.source for s in stages}}

    # --- the glue
    def add_infer_arguments(self, parser) -> None:
        d = CascadeParams()
        parser.add_argument("--factor", type=bounded(float, 0.1, 1, hi_open=True), default=d.factor,
                            help=f"pyramid scale step ({d.factor})")
        parser.add_argument("--thresholds", type=_thresholds, default=d.thresholds,
                            help="face probability thresholds of P-Net, R-Net, O-Net (default 0.6,0.7,0.7)")
        parser.add_argument("--no-draw", action="store_true", help="do not write annotated images to --out")

    def check_infer_arguments(self, args, config: dict) -> None:
        built = config.get("min_face", 20)
        if args.min_face < built:
            raise UserError(f"--min-face {args.min_face}: the engine's P-Net profile was built for faces of "
                            f"{built} px and up (rebuild with --min-face {args.min_face})")

    def connect(self, runners: dict[str, StageRunner], config: dict, args) -> "Glue":
        return Glue(make_cascade(runners, params_of(args, config)))

    def output_names(self) -> list[str]:
        return ["faces"]

    def load_images(self, items, config: dict, device: str = "cpu"):
        """RGB photos for the cascade (any size); unreadable ones become error records."""
        images, contexts = readable_images(items)
        images = [cv2.cvtColor(image, cv2.COLOR_BGR2RGB) for image in images]
        for context, image in zip([c for c in contexts if "image" in c], images):
            context["image"] = image
        return images, contexts

    def records(self, outputs, contexts, config: dict, args) -> list[dict]:
        records = [c for c in contexts if "error" in c]
        good = [c for c in contexts if "error" not in c]
        for context, faces in zip(good, outputs["faces"]):
            records.append({"file": context["file"], "faces": faces.records()})
            if getattr(args, "out", None) and not getattr(args, "no_draw", False):
                write_annotated(Path(args.out) / Path(context["file"]).name, context["image"], faces)
        return records

    def sample_input(self, config: dict, batch: int, seed: int = 0) -> list[np.ndarray]:
        """`batch` of the installed photos (RGB), for bench."""
        from zoo.assets import asset_path
        return [_read_rgb(asset_path(DEFAULT_PHOTOS[i % len(DEFAULT_PHOTOS)])) for i in range(batch)]

    # --- INT8, validation
    def calibration_batches(self, stage: str, runners: dict[str, StageRunner], images: list[np.ndarray]):
        """What `stage` sees in the cascade: the pyramid levels (P-Net), crops of P-Net's candidates (R-Net), crops of
        R-Net's candidates and of P-Net's first 64 (O-Net), all from FP32 runners."""
        cascade = make_cascade(runners, CascadeParams())
        for image in images:
            sampler = AreaSampler(torch.from_numpy(np.ascontiguousarray(image)))
            h, w = image.shape[:2]
            if stage == "pnet":
                for scale in pyramid_scales(h, w, 20, 0.709):
                    yield sampler.level(int(h * scale + 1), int(w * scale + 1)).numpy()
                continue
            proposals, _ = cascade.proposals(sampler)
            boxes = proposals
            if stage == "onet":
                refined, _ = cascade.refine(sampler, proposals)
                boxes = torch.cat([refined, proposals[:64]])
            regions, _ = crop_regions(boxes, h, w)
            for start in range(0, len(regions), 64):
                yield sampler.crops(regions[start:start + 64], CROP_SIZE[stage], CROP_SIZE[stage]).numpy()

    def validate_end_to_end(self, runners: dict[str, StageRunner], config: dict, args) -> tuple[str, bool]:
        from zoo.assets import asset_path
        params = CascadeParams(min_face=config["min_face"])
        photos = [(name, asset_path(name)) for name in DEFAULT_PHOTOS]
        rows = compare_cascades(make_cascade(runners, params), torch_networks(getattr(args, "weights", None)),
                                photos, params, BOX_TOLERANCE)
        return format_cascade_rows(rows, BOX_TOLERANCE), all(r.ok for r in rows)

    def reference_pipeline(self, args, device: str):
        """The pure PyTorch cascade (torch_cascade.py) on the same weights: `bench --compare-torch` times it."""
        nets = {stage: module.to(device) for stage, module in torch_networks(getattr(args, "weights", None)).items()}
        params = params_of(args)

        def run(images: list[np.ndarray]) -> dict[str, list]:
            return {"faces": [detect_faces(image, nets["pnet"], nets["rnet"], nets["onet"], params.min_face,
                                           params.factor, params.thresholds) for image in images]}
        return run


BOX_TOLERANCE = 2.0  # px: the zoo's cascade against the pure PyTorch one, boxes and landmarks


class Glue:
    """The cascade over a list of RGB photos: {"faces": [Faces per photo]}."""

    def __init__(self, cascade: Cascade):
        self.cascade = cascade

    def __call__(self, images: list[np.ndarray]) -> dict[str, list[Faces]]:
        return {"faces": [self.cascade.detect(image) for image in images]}


def params_of(args, config: dict | None = None) -> CascadeParams:
    """The cascade's flags; the smallest face defaults to the one the engine was built for."""
    d = CascadeParams()
    min_face = getattr(args, "min_face", (config or {}).get("min_face", d.min_face))
    return CascadeParams(min_face=min_face, factor=getattr(args, "factor", d.factor),
                         thresholds=tuple(getattr(args, "thresholds", d.thresholds)))


def pnet_profile(max_side: int, min_face: int) -> tuple[tuple, tuple, tuple]:
    """P-Net's (min, opt, max) input shapes: from 12x12 up to the first pyramid level of a max_side photo."""
    top = int(max_side * 12.0 / min_face + 1)
    opt = min(top, 320)
    return (1, 3, 12, 12), (1, 3, opt, opt), (1, 3, top, top)


def named_outputs(runner: StageRunner, stage: str):
    """A stage runner whose outputs carry the cascade's names ("prob", "reg", "landmarks"), in the network's order."""
    def run(batch: torch.Tensor) -> dict[str, torch.Tensor]:
        return dict(zip(OUTPUTS[stage], runner(batch).values()))
    return run


def make_cascade(runners: dict[str, StageRunner], params: CascadeParams = CascadeParams(),
                 device: str | None = None) -> Cascade:
    """The cascade on the runners' device (or on `device`: e.g. the GPU for crops and NMS around CPU runners)."""
    max_batch = min(runners[s].max_batch for s in ("rnet", "onet"))
    run = {stage: named_outputs(runners[stage], stage) for stage in STAGES}
    return Cascade(run, device or runners["pnet"].device, params, max_batch)


def weight_file(folder: Path | None, stage: str) -> Path:
    """`<folder>/<stage>.pt` (or .pth, .wts), or facenet-pytorch's installed file when no folder is given."""
    if folder is None:
        from zoo.assets import asset_path
        return asset_path(f"mtcnn_{stage}")
    if not folder.is_dir():
        raise UserError(f"--weights {folder}: not a folder (MTCNN reads pnet.pt, rnet.pt, onet.pt from one)")
    for suffix in (".pt", ".pth", ".wts"):
        if (folder / f"{stage}{suffix}").is_file():
            return folder / f"{stage}{suffix}"
    raise UserError(f"--weights {folder}: no {stage}.pt (nor .pth, .wts) in it; the folder needs pnet.pt, rnet.pt "
                    f"and onet.pt (facenet-pytorch's files)")


def load_stage_weights(folder: Path | None, stage: str) -> tuple[WeightMap, dict]:
    """The weights of one network, checked to be that network's: (weights, config)."""
    from zoo.engine.checkpoint import load_state_dict
    path = weight_file(folder, stage)
    try:
        weights = WeightMap(load_state_dict(path).tensors, str(path))
        return weights, NETWORK.config_from_weights(weights, stage=stage)
    except ValueError as e:  # CheckpointError, WtsError: already one line naming the file
        raise UserError(str(e) if str(path) in str(e) else f"{path}: {e}") from None


def reference_network(weights: WeightMap, config: dict) -> torch.nn.Module:
    """The PyTorch module of one network with these weights (every key and shape checked)."""
    return load_state_into(NETWORK.reference_module(config), WeightMap(weights.arrays(), weights.source))


def torch_networks(weights_dir: Path | None) -> dict[str, torch.nn.Module]:
    """The three PyTorch reference modules with their weights."""
    return {stage: reference_network(*load_stage_weights(weights_dir, stage)) for stage in STAGES}


def _read_rgb(path: Path) -> np.ndarray:
    return cv2.cvtColor(cv2.imread(str(path)), cv2.COLOR_BGR2RGB)


def write_annotated(path: Path, image_rgb: np.ndarray, faces: Faces) -> None:
    from zoo.engine.files import write_bytes_atomic
    from zoo.vision.draw import draw_record
    out = draw_record(cv2.cvtColor(image_rgb, cv2.COLOR_RGB2BGR), {"faces": faces.records()})
    ok, data = cv2.imencode(path.suffix or ".jpg", out)
    if not ok:
        raise UserError(f"{path}: could not encode the annotated image")
    write_bytes_atomic(path, data.tobytes())
