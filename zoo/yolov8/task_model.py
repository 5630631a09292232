"""YOLOv8 / YOLO11 of every task as one model of the zoo: the task is read from the weights, and the same commands
(build, infer, validate, bench) serve detection, segmentation, pose, oriented boxes and classification.

Detection is zoo.yolov8.zoo_model's; this class adds the other tasks' configuration, network and outputs:
- segment: NMS carries the mask coefficients; masks as COCO RLE and polygons in original pixels (zoo.vision.masks);
- pose: NMS carries the keypoints; keypoints in original pixels, skeletons drawn for COCO's 17 (zoo.vision.keypoints);
- obb: rotated NMS with probiou; centre, size, angle and corners in original pixels (zoo.vision.obb);
- classify: ultralytics' crop (short side, centre, /255), the network's softmax, top-5 with the checkpoint's names.
"""
from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
import torch

from zoo.engine.classifier import ClassifierModel
from zoo.engine.errors import say, UserError
from zoo.vision.coco import COCO_NAMES
from zoo.vision.draw import draw_detections
from zoo.vision.keypoints import draw_keypoints, keypoint_records, scale_keypoints
from zoo.vision.nms import batched_nms
from zoo.vision.obb import corners, draw_rotated, obb_nms, regularize, scale_rotated
from zoo.vision.yolo_classify import center_crop_torch, ultralytics_classify_input, ultralytics_spec
from zoo.yolov5.zoo_model import _batch_index, _box_records, _write_image, parse_size

from .config import ConfigError
from .model import SCALES
from .task_builder import define_task
from .task_config import TaskConfig, infer_task_config
from .tasks import TASKS, randomize_task_
from .zoo_model import SPPF_ACTS, YoloV8Model

DEFAULT_SIZE = {"classify": (224, 224)}


def parse_kpt_shape(text: str) -> tuple[int, int]:
    try:
        k, d = (int(v) for v in text.lower().replace("x", ",").split(","))
    except ValueError:
        raise argparse.ArgumentTypeError(f"keypoint shape {text!r} is not K,D (e.g. 17,3)") from None
    if k < 1 or d not in (2, 3):
        raise argparse.ArgumentTypeError(f"keypoint shape {text!r}: K >= 1 and D = 2 or 3")
    return k, d


class YoloTaskModel(YoloV8Model):
    def __init__(self, name: str = "yolov8"):
        super().__init__(name)
        self.summary = ("YOLOv8 and YOLO11: detection, segmentation, pose, oriented boxes and classification, the "
                        "task, scale and classes read from the weights: build, infer, validate, bench.")

    def add_arguments(self, parser):
        super().add_arguments(parser)
        parser.add_argument("--task", choices=TASKS, default="detect",
                            help="task of random weights when no --weights are given (weights say their own task; "
                                 "default detect)")
        parser.add_argument("--kpt-shape", type=parse_kpt_shape,
                            help="pose: keypoints x values (e.g. 17,3) for weights that do not record it; random "
                                 "pose weights: default 17,3")
        parser.set_defaults(num_classes=None, input_size=None)
        for action in parser._actions:  # the task decides these defaults
            if action.dest == "num_classes":
                action.help = "classes of random weights (default 80; 1000 for classify)"
            elif action.dest == "input_size":
                action.help = "network input, N or HxW, multiples of 32 (default 640; 224 for classify)"

    # --- configuration
    def random_module(self, args, seed):
        task = getattr(args, "task", "detect")
        family = args.family or self.name
        depth, width, max_channels = SCALES[family][args.scale]
        classes = args.num_classes or (1000 if task == "classify" else 80)
        config = TaskConfig(family=family, depth=depth, width=width, max_channels=max_channels, num_classes=classes,
                            depthwise_head=family == "yolo11", sppf_act=SPPF_ACTS[args.sppf_act or "silu"],
                            task=task, kpt_shape=(args.kpt_shape or (17, 3)) if task == "pose" else None)
        return randomize_task_(config.build_module(), seed).eval()

    def config_from_weights(self, weights, args):
        meta = getattr(weights, "meta", None)
        sppf_act = SPPF_ACTS[args.sppf_act] if getattr(args, "sppf_act", None) else None
        try:
            config = infer_task_config(weights.arrays(), weights.source, meta, sppf_act,
                                       getattr(args, "kpt_shape", None))
        except ConfigError as e:
            raise UserError(str(e)) from None
        if getattr(args, "family", None) and args.family != config.family:
            raise UserError(f"--family {args.family} disagrees with {weights.source}, which holds {config.variant} "
                            "weights")
        if not weights.source.startswith("random "):
            say(f"{weights.source}: found {config.variant} weights ({config.num_classes} classes)")
        height, width = args.input_size or DEFAULT_SIZE.get(config.task, (640, 640))
        if config.task == "classify":
            if min(height, width) < 32:
                raise UserError(f"input size {height}x{width}: a classifier input needs at least 32 pixels a side")
        else:
            try:
                config.check_input_size(height, width)
            except ConfigError as e:
                raise UserError(str(e)) from None
        values = config.to_dict()
        values.update(variant=config.variant, input_size=[height, width], decode=args.decode,
                      sppf_act_name="silu" if config.sppf_act else "none")
        return values

    def reference_module(self, config):
        return TaskConfig.from_dict(config).build_module()

    def define(self, net, weights, config, x):
        return define_task(net, weights, TaskConfig.from_dict(config), x, config.get("decode", "plugin"))

    def output_name(self, config) -> str:
        return f"model.{TaskConfig.from_dict(config).head_index}"

    def sample_input(self, config, batch, seed=0):
        if config.get("task") == "classify":
            return _Classifier().sample(config, batch, seed)
        return super().sample_input(config, batch, seed)

    # --- inference
    def load_images(self, items, config, device="cpu"):
        if config.get("task") == "classify":
            return _Classifier().load_images(items, config, device)
        return super().load_images(items, config, device)

    def detections(self, outputs: dict, config: dict, args) -> list[torch.Tensor]:
        """Detect / segment / pose: ultralytics' NMS, carrying the mask coefficients or keypoints after each kept
        row, (K, 6 + extra). OBB: rotated NMS, (K, 7) [cx, cy, w, h, angle, score, class]."""
        task = config.get("task", "detect")
        prediction = outputs[self.output_name(config)]
        if task == "obb":
            return obb_nms(prediction, args.conf, args.iou, args.classes, args.agnostic, args.max_det)
        extra = {"segment": config.get("num_masks", 0), "pose": int(np.prod(config.get("kpt_shape") or (0,)))}
        return batched_nms(prediction.transpose(1, 2), args.conf, args.iou, args.classes, args.agnostic, args.max_det,
                           objectness=False, nm=extra.get(task, 0))

    def agreement(self, fp32_outputs, low_outputs, config):
        if config.get("task") == "classify":
            ref, low = fp32_outputs[self.output_name(config)], low_outputs[self.output_name(config)]
            return int((ref.argmax(1) == low.argmax(1)).sum()), len(ref)
        if config.get("task") == "obb":
            raise UserError("--images agreement counts axis-aligned detections; not available for oriented boxes")
        return super().agreement(fp32_outputs, low_outputs, config)

    def records(self, outputs, contexts, config, args):
        task = config.get("task", "detect")
        if task == "classify":
            return _Classifier().records(outputs, contexts, config, args)
        if task in ("detect", "segment"):
            return super().records(outputs, contexts, config, args)
        names = config.get("class_names") or (COCO_NAMES if config["num_classes"] == 80 else None)
        kept = self.detections(outputs, config, args)
        records = []
        for index, context in enumerate(contexts):
            if context is not None and "error" in context:
                records.append({"file": context["file"], "error": context["error"]})
                continue
            dets = kept[_batch_index(contexts, index)].float().cpu().numpy()
            lb = None if context is None else context["letterbox"]
            record = {"file": context["file"]} if context else {"index": index}
            draw = context is not None and getattr(args, "out", None) and not args.no_draw
            image = context["image"].copy() if draw else None
            if task == "pose":
                record["detections"], image = _pose_records(dets, config, lb, names, image)
            else:
                record["detections"], image = _obb_records(dets, lb, names, image)
            records.append(record)
            if draw:
                _write_image(Path(args.out) / Path(context["file"]).name, image, context["file"])
        return records


def _pose_records(dets: np.ndarray, config: dict, letterbox, names, image):
    k, d = config["kpt_shape"]
    keypoints = dets[:, 6:].reshape(len(dets), k, d)
    boxes = dets[:, :6].copy()
    if letterbox is not None:
        from zoo.vision.letterbox import scale_boxes
        boxes[:, :4] = scale_boxes(boxes[:, :4], config["input_size"], (letterbox.src_h, letterbox.src_w), letterbox)
        keypoints = scale_keypoints(keypoints, letterbox)
    records = _box_records(boxes, names)
    for record, points in zip(records, keypoint_records(keypoints)):
        record["keypoints"] = points
    if image is not None:
        image = draw_keypoints(draw_detections(image, boxes, names), keypoints)
    return records, image


def _obb_records(dets: np.ndarray, letterbox, names, image):
    rboxes = regularize(dets[:, :5]) if len(dets) else np.zeros((0, 5), np.float32)
    if letterbox is not None:
        rboxes = scale_rotated(rboxes, letterbox)
    quads = corners(rboxes)
    records = [{"rbox": {"cx": round(float(b[0]), 2), "cy": round(float(b[1]), 2), "w": round(float(b[2]), 2),
                         "h": round(float(b[3]), 2), "angle": round(float(b[4]), 5)},
                "corners": [[round(float(v), 2) for v in point] for point in quad],
                "score": round(float(det[5]), 5), "class_id": int(det[6]),
                "class_name": names[int(det[6])] if names else str(int(det[6]))}
               for b, quad, det in zip(rboxes, quads, dets)]
    if image is not None:
        image = draw_rotated(image, np.concatenate([rboxes, dets[:, 5:7]], 1), names)
    return records, image


class _Classifier(ClassifierModel):
    """ultralytics' classification crop and the network's own softmax."""

    def preprocess(self, image_bgr, config):
        return ultralytics_classify_input(image_bgr, config["input_size"][0])

    def preprocess_on_device(self, images_bgr, config, device):
        return center_crop_torch(images_bgr, ultralytics_spec(config["input_size"][0]), device)

    def input_shape(self, config):
        return (3, *config["input_size"])

    def probabilities(self, outputs):
        probs = next(iter(outputs.values())).float().cpu()
        return probs.reshape(len(probs), -1)  # the network ends in softmax

    def sample(self, config, batch, seed):
        from zoo.vision.synthetic import draw_scene, scene_sizes
        return np.stack([self.preprocess(draw_scene(h, w, seed + i), config)
                         for i, (h, w) in enumerate(scene_sizes(batch, seed))])


__all__ = ["YoloTaskModel", "parse_size"]
