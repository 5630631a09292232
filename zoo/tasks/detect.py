"""Detection as a part: letterbox in; NMS (upstream semantics: with objectness for YOLOv5's anchored head, without
for the anchor-free heads, whose output is channel-first (B, 4 + nc, A)); records with boxes in original pixels and
class names; annotated images; agreement of low-precision detections with FP32; per-stage bench times."""
from __future__ import annotations

import argparse
from pathlib import Path

import cv2
import numpy as np
import torch

from zoo.engine.files import atomic_path, refuse_write_over
from zoo.engine.errors import UserError
from zoo.engine.flags import bounded, non_negative_int, probability
from zoo.engine.model import readable_images
from zoo.engine.timing import ms_per_image
from zoo.vision.coco import COCO_NAMES
from zoo.vision.draw import draw_record
from zoo.vision.letterbox import letterbox_params, preprocess, scale_boxes
from zoo.vision.nms import batched_nms, count_matches
from zoo.vision.synthetic import draw_scene, scene_sizes

YOLOV5_NMS = dict(conf=0.25, iou=0.45, max_det=1000)      # upstream detect.py's
ULTRALYTICS_NMS = dict(conf=0.25, iou=0.7, max_det=300)   # ultralytics' predict defaults


class Detect:
    name = "detect"
    kind = "detect"              # the outputs of a Triton ensemble: boxes as tensors beside the JSON records
    default_size = (640, 640)
    default_classes = 80

    def __init__(self, objectness: bool = False, nms_defaults: dict | None = None):
        self.objectness = objectness
        self.nms_defaults = nms_defaults or (YOLOV5_NMS if objectness else ULTRALYTICS_NMS)

    # --- flags
    def add_infer_arguments(self, parser, with_max_det: bool = True) -> None:
        d = self.nms_defaults
        parser.add_argument("--conf", type=probability, default=d["conf"],
                            help=f"confidence threshold (default {d['conf']})")
        parser.add_argument("--iou", type=probability, default=d["iou"],
                            help=f"NMS IoU threshold (default {d['iou']}; end-to-end heads have no NMS)")
        if with_max_det:
            parser.add_argument("--max-det", type=bounded(int, 1, 100_000), default=d["max_det"],
                                help=f"detections kept per image (default {d['max_det']})")
        parser.add_argument("--agnostic", action="store_true", help="class-agnostic NMS")
        parser.add_argument("--classes", type=non_negative_int, nargs="+",
                            help="keep only these class ids (each below the model's class count)")
        parser.add_argument("--no-draw", action="store_true", help="do not write annotated images to --out")

    def check_infer_arguments(self, args, config) -> None:
        n = config.num_classes
        if getattr(args, "classes", None) and max(args.classes) >= n:
            raise UserError(f"--classes: {max(args.classes)} is out of range (the model has {n} classes: allowed "
                            f"0..{n - 1})")

    # --- inputs
    def sample_input(self, config, batch: int, seed: int = 0) -> np.ndarray:
        scenes = [draw_scene(h, w, seed + i) for i, (h, w) in enumerate(scene_sizes(batch, seed))]
        return preprocess(scenes, config.input_size)[0]

    def load_images(self, items, config, device="cpu"):
        images, contexts = readable_images(items)
        good = [c for c in contexts if "image" in c]
        if not images:
            return np.zeros((0, 3, *config.input_size), np.float32), contexts
        batch, params = self.preprocess(images, config, device, with_params=True)
        for context, p in zip(good, params):
            context["letterbox"] = p
        return batch, contexts

    def preprocess(self, images, config, device, with_params=False):
        if device == "cuda":
            from plugins.letterbox import preprocess_batch
            batch, params = preprocess_batch(images, config.input_size, device)
        else:
            batch, params = preprocess(images, config.input_size)
        return (batch, params) if with_params else batch

    # --- outputs
    def output(self, outputs: dict, config):
        name = config.output_name
        if name not in outputs:  # an engine whose header's config does not describe its network
            raise UserError(f"the network has no output {name!r} (it has {sorted(outputs)[:4]}): the engine "
                            "header's configuration does not match the engine")
        return outputs[name]

    def extra_values(self, config) -> int:
        """Values carried after each kept row (mask coefficients, keypoints)."""
        return 0

    def detections(self, outputs: dict, config, args) -> list[torch.Tensor]:
        """Per image (K, 6 + extra) [x1, y1, x2, y2, score, class, extra...] in network-input pixels."""
        prediction = self.output(outputs, config)
        if getattr(config, "end2end", False):
            return end_to_end_rows(prediction, args.conf, args.classes, args.max_det)
        if not self.objectness:
            prediction = prediction.transpose(1, 2)
        return batched_nms(prediction, args.conf, args.iou, args.classes, args.agnostic, args.max_det,
                           objectness=self.objectness, nm=self.extra_values(config))

    def names(self, config):
        return config.class_names or (COCO_NAMES if config.num_classes == 80 else None)

    def records(self, outputs, contexts, config, args) -> list[dict]:
        names = self.names(config)
        kept = self.detections(outputs, config, args)
        records = []
        for index, context in enumerate(contexts):
            if context is not None and "error" in context:
                records.append({"file": context["file"], "error": context["error"]})
                continue
            dets = kept[batch_index(contexts, index)]
            if context is None or "image" not in context:
                # a .npy batch: boxes stay in the network input's pixels, no image to map them to
                index_of = (context or {}).get("index", index)
                records.append({"index": index_of, "detections": box_records(dets[:, :6].float().cpu().numpy(),
                                                                               names)})
                continue
            draw = bool(getattr(args, "out", None)) and not getattr(args, "no_draw", False)
            record = self.image_record(dets, outputs, contexts, index, config, names)
            records.append(record)
            if draw:
                write_image(Path(args.out) / Path(context["file"]).name, draw_record(context["image"], record),
                            context["file"])
        return records

    def image_record(self, dets, outputs, contexts, index, config, names) -> dict:
        """The record of one image's kept rows, in original pixels (what zoo.vision.draw draws from)."""
        context = contexts[index]
        rows = self.scaled_rows(dets, config, context)
        return {"file": context["file"], "detections": box_records(rows, names)}

    def scaled_rows(self, dets, config, context) -> np.ndarray:
        boxes = scale_boxes(dets[:, :4].float().cpu().numpy(), config.input_size, context["image"].shape[:2],
                            context["letterbox"])
        return np.concatenate([boxes, dets[:, 4:6].float().cpu().numpy()], 1)

    # --- validate --precision --images, bench --source
    agreement_terms = ("detections", "IoU >= 0.5, same class")   # what `agreement` counts, for validate's line

    def agreement(self, fp32_outputs: dict, low_outputs: dict, config) -> tuple[int, int]:
        """(FP32 detections reproduced by the low-precision outputs (IoU >= 0.5, same class), FP32 detections)."""
        args = argparse.Namespace(classes=None, agnostic=False, **{**self.nms_defaults, "max_det": 300})
        reference, other = self.detections(fp32_outputs, config, args), self.detections(low_outputs, config, args)
        return sum(count_matches(r, o) for r, o in zip(reference, other)), sum(len(r) for r in reference)

    def extra_stage(self, outputs, detections, images, config) -> None:
        """A fourth bench stage after NMS (segmentation's masks); none here."""

    stages = ("preprocess", "network", "nms")     # "nms": the post-processing (a threshold end to end)

    def bench_stages(self, run_network, images, config, args, device) -> dict:
        """Milliseconds per image of each stage over `images` in batches of args.batch, after one warm-up batch.
        `run_network(batch) -> outputs` is the engine or the PyTorch reference, so both go through the same
        pre-processing and NMS."""
        nms_args = argparse.Namespace(classes=None, agnostic=False, **{**self.nms_defaults, "max_det": 300})

        def run_batch(chunk, mark):
            batch = self.preprocess(chunk, config, device)
            mark()
            outputs = run_network(batch)
            mark()
            dets = self.detections(outputs, config, nms_args)
            mark()
            if len(self.stages) > 3:
                self.extra_stage(outputs, dets, chunk, config)
                mark()

        return ms_per_image(images, args.batch, self.stages, run_batch, device)


def end_to_end_rows(rows, conf: float, classes, max_det: int) -> list[torch.Tensor]:
    """An end-to-end head's output (B, k, 6 + extra), rows already sorted by score: per image, those above `conf`
    (and of `classes`), at most `max_det`. No NMS: the one-to-one head gives one row per object."""
    rows = torch.as_tensor(rows)
    kept = []
    for image in rows:
        keep = image[:, 4] > conf
        if classes:
            keep &= torch.isin(image[:, 5].long(), torch.as_tensor(classes, device=image.device))
        kept.append(image[keep][:max_det])
    return kept


def batch_index(contexts, index: int) -> int:
    """Position of contexts[index] in the network batch (items that failed to load are not in it)."""
    return sum(1 for c in contexts[:index] if c is None or "error" not in c)


def box_records(rows: np.ndarray, names) -> list[dict]:
    """[x1, y1, x2, y2, score, class, ...] rows as records: boxes to 0.01 px, scores to 1e-5. Rounded as arrays,
    then made Python numbers at once (a thousand rows an image with random weights: 3.5x faster than per value)."""
    rows = np.asarray(rows, np.float64)
    boxes, scores = np.round(rows[:, :4], 2).tolist(), np.round(rows[:, 4], 5).tolist()
    return [{"box": box, "score": score, "class_id": c, "class_name": names[c] if names else str(c)}
            for box, score, c in zip(boxes, scores, rows[:, 5].astype(np.int64).tolist())]


def write_image(path: Path, image: np.ndarray, source: str) -> None:
    """Through a temporary file of the same extension (cv2 picks the format from it), then renamed; never over
    the input image itself."""
    refuse_write_over(path, [source])
    with atomic_path(path) as tmp:
        if not cv2.imwrite(str(tmp), image):
            raise OSError(f"cannot write image {path}")


def letterbox_of(image, config):
    return letterbox_params(image.shape[:2], config.input_size)
