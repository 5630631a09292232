"""YOLOv5 as a model of the zoo: the task (detect, segment, classify) and configuration from the weights; letterbox
in, NMS and boxes (and masks) in original pixels out, or the classifier's crop in and top-5 out."""
from __future__ import annotations

import argparse
import dataclasses
import time
from pathlib import Path

import cv2
import numpy as np
import torch

from zoo.engine.files import atomic_path, refuse_write_over
from zoo.engine.model import ZooModel
from zoo.engine.errors import UserError
from zoo.engine.flags import bounded, non_negative_int, probability
from zoo.vision.coco import COCO_NAMES
from zoo.vision.draw import draw_detections
from zoo.vision.letterbox import letterbox_params, preprocess, scale_boxes
from zoo.vision.nms import batched_nms, count_matches
from zoo.vision.synthetic import draw_scene, scene_sizes

from zoo.engine.classifier import ClassifierModel
from zoo.vision.masks import draw_masks, encode_rle, iter_masks, mask_polygons
from zoo.vision.yolo_classify import yolov5_classify_input, yolov5_classify_torch

from .builder import DECODES, define_yolov5
from .config import TASK_SUFFIX, TASKS, YoloV5Config, infer_config
from .model import VARIANTS, random_yolov5
from .tasks import random_yolov5_classify, random_yolov5_segment

DEFAULT_SIZE = {"detect": (640, 640), "segment": (640, 640), "classify": (224, 224)}


def parse_size(text: str) -> tuple[int, int]:
    """'640' -> (640, 640); '480x640' -> (height, width)."""
    try:
        parts = [int(p) for p in text.lower().split("x")]
    except ValueError:
        raise argparse.ArgumentTypeError(f"input size {text!r} is not N or HxW") from None
    if len(parts) == 1:
        parts *= 2
    if len(parts) != 2 or min(parts) <= 0 or max(parts) > 16384:
        raise argparse.ArgumentTypeError(f"input size {text!r} is out of range (allowed: N or HxW, each in 1..16384)")
    return parts[0], parts[1]


def to_config(config: dict) -> YoloV5Config:
    fields = {f.name for f in dataclasses.fields(YoloV5Config)}
    return YoloV5Config(**{k: v for k, v in config.items() if k in fields})


class YoloV5Model(ZooModel):
    name = "yolov5"
    input_name = "images"
    nms_defaults = dict(conf=0.25, iou=0.45, max_det=1000)  # upstream detect.py's; agreement and bench keep 300
    summary = ("YOLOv5 v7.0 detection, segmentation (-seg) and classification (-cls) (n/s/m/l/x and P6 n6..x6, or "
               "any custom width/depth/classes read from the weights): build, infer, validate, bench.")

    def add_arguments(self, parser):
        variants = sorted(VARIANTS) + [v + "6" for v in sorted(VARIANTS)]
        parser.add_argument("--variant", choices=variants,
                            help="random-weight variant when no --weights are given (default n); with --weights it "
                                 "must agree with them")
        parser.add_argument("--task", choices=TASKS, default="detect",
                            help="task of random weights when no --weights are given (weights say their own task; "
                                 "default detect)")
        parser.add_argument("--num-classes", type=bounded(int, 1, 100_000),
                            help="classes of random weights (default 80; 1000 for classify); with --weights it must "
                                 "agree with them")
        parser.add_argument("--input-size", type=parse_size,
                            help="network input, N or HxW, multiples of the largest stride (default 640; 224 for "
                                 "classify)")
        parser.add_argument("--decode", choices=DECODES, default="plugin",
                            help="plugin: the zoo::yolo_decode plugin (kernel embedded in the engine); layers: plain "
                                 "TensorRT layers, an engine without custom plugins (default plugin)")

    def add_infer_arguments(self, parser):
        d = self.nms_defaults
        parser.add_argument("--conf", type=probability, default=d["conf"],
                            help=f"confidence threshold (default {d['conf']})")
        parser.add_argument("--iou", type=probability, default=d["iou"], help=f"NMS IoU threshold (default {d['iou']})")
        parser.add_argument("--max-det", type=bounded(int, 1, 100_000), default=d["max_det"],
                            help=f"detections kept per image (default {d['max_det']})")
        parser.add_argument("--agnostic", action="store_true", help="class-agnostic NMS")
        parser.add_argument("--classes", type=non_negative_int, nargs="+",
                            help="keep only these class ids (each below the model's class count)")
        parser.add_argument("--no-draw", action="store_true", help="do not write annotated images to --out")

    def check_infer_arguments(self, args, config):
        if args.classes and max(args.classes) >= config["num_classes"]:
            raise UserError(f"--classes: {max(args.classes)} is out of range (the model has {config['num_classes']} "
                            f"classes: allowed 0..{config['num_classes'] - 1})")

    # --- configuration
    def random_module(self, args, seed):
        variant = args.variant or "n"
        p6 = variant.endswith("6")
        task = getattr(args, "task", "detect")
        classes = args.num_classes or (1000 if task == "classify" else 80)
        if task == "classify":
            return random_yolov5_classify(variant, classes, seed)
        if task == "segment":
            return random_yolov5_segment(variant.rstrip("6"), classes, seed, p6=p6)
        return random_yolov5(variant.rstrip("6"), classes, seed, p6=p6).eval()

    def config_from_weights(self, weights, args):
        config = infer_config(weights.arrays(), source_name=weights.source)
        # one rule for every model: a flag that disagrees with the weights is an error, never silently ignored
        if getattr(args, "variant", None) and args.variant != config.variant:
            raise UserError(f"--variant {args.variant} disagrees with {weights.source}, which holds "
                            f"yolov5{config.variant or '-custom'}")
        if getattr(args, "num_classes", None) and args.num_classes != config.num_classes:
            raise UserError(f"--num-classes {args.num_classes} disagrees with {weights.source}, which has "
                            f"{config.num_classes} classes")
        height, width = args.input_size or DEFAULT_SIZE[config.task]
        if config.task == "classify":
            if min(height, width) < 32:
                raise ValueError(f"input size {height}x{width}: a classifier input needs at least 32 pixels a side")
        else:
            config.check_input_size(height, width)
        values = dataclasses.asdict(config)
        values.update(variant=config.variant or "custom", input_size=[height, width], decode=args.decode)
        return values

    def variant(self, config):
        suffix = TASK_SUFFIX[config.get("task", "detect")]
        return (f"yolov5{config['variant']}" if config["variant"] != "custom" else "yolov5-custom") + suffix

    def reference_module(self, config):
        return to_config(config).build_module()

    def input_shape(self, config):
        return (3, *config["input_size"])

    def define(self, net, weights, config, x):
        return define_yolov5(net, weights, to_config(config), x, config.get("decode", "plugin"))

    def sample_input(self, config, batch, seed=0):
        """Synthetic scenes of varied sizes, through the task's one pre-processing used everywhere."""
        scenes = [draw_scene(h, w, seed + i) for i, (h, w) in enumerate(scene_sizes(batch, seed))]
        if config.get("task") == "classify":
            return np.stack([yolov5_classify_input(s, config["input_size"][0]) for s in scenes])
        return preprocess(scenes, config["input_size"])[0]

    # --- inference
    def load_images(self, items, config, device="cpu"):
        if config.get("task") == "classify":
            return _Classifier().load_images(items, config, device)
        images, contexts = [], []
        for name, image, reason in items:
            if image is None:
                contexts.append({"file": name, "error": f"{reason}, skipped"})
                continue
            images.append(image)
            contexts.append({"file": name, "image": image})
        good = [c for c in contexts if "image" in c]
        if not images:
            return np.zeros((0, *self.input_shape(config)), np.float32), contexts
        if device == "cuda":
            from plugins.letterbox import preprocess_batch
            batch, params = preprocess_batch(images, config["input_size"], device)
        else:
            batch, params = preprocess(images, config["input_size"])
        for context, p in zip(good, params):
            context["letterbox"] = p
        return batch, contexts

    def detections(self, outputs: dict, config: dict, args) -> list[torch.Tensor]:
        """NMS (upstream semantics) on the decoded output, on whichever device it lives on. Segment: the mask
        coefficients follow each kept row, (K, 6 + nm)."""
        name = self.output_name(config)
        if name not in outputs:  # an engine whose header's config does not describe its network
            raise UserError(f"the network has no output {name!r} (it has {sorted(outputs)[:4]}): the engine "
                            f"header's configuration does not match the engine")
        prediction = outputs[name]
        if config.get("task") != "segment":
            return batched_nms(prediction, args.conf, args.iou, args.classes, args.agnostic, args.max_det)
        return batched_nms(prediction, args.conf, args.iou, args.classes, args.agnostic, args.max_det,
                           nm=config["num_masks"])

    def output_name(self, config) -> str:
        """The head's output: model.24 (model.33 for P6), model.9 for a classifier."""
        return "model.9" if config.get("task") == "classify" else f"model.{33 if config['p6'] else 24}"

    def agreement(self, fp32_outputs: dict, low_outputs: dict, config: dict) -> tuple[int, int]:
        """(FP32 detections reproduced by the low-precision outputs, FP32 detections), at the infer defaults;
        classify: (images whose top-1 class agrees, images)."""
        if config.get("task") == "classify":
            (ref,), (low,) = fp32_outputs.values(), low_outputs.values()
            return int((ref.argmax(1) == low.argmax(1)).sum()), len(ref)
        args = argparse.Namespace(classes=None, agnostic=False, **{**self.nms_defaults, "max_det": 300})
        reference, other = self.detections(fp32_outputs, config, args), self.detections(low_outputs, config, args)
        return sum(count_matches(r, o) for r, o in zip(reference, other)), sum(len(r) for r in reference)

    def records(self, outputs, contexts, config, args):
        if config.get("task") == "classify":
            return _Classifier().records(outputs, contexts, config, args)
        names = config.get("class_names") or (COCO_NAMES if config["num_classes"] == 80 else None)
        kept = iter(self.detections(outputs, config, args))
        protos = outputs.get(f"{self.output_name(config)}.proto") if config.get("task") == "segment" else None
        records = []
        for index, context in enumerate(contexts):
            if context is None or not ("image" in context or "error" in context):
                # a .npy batch: boxes stay in the network input's pixels, no image to map them to
                dets = next(kept)[:, :6].float().cpu().numpy()
                records.append({"index": (context or {}).get("index", index), "detections": _box_records(dets, names)})
                continue
            if "error" in context:
                records.append({"file": context["file"], "error": context["error"]})
                continue
            dets = next(kept)
            image = context["image"]
            boxes = scale_boxes(dets[:, :4].float().cpu().numpy(), config["input_size"], image.shape[:2],
                                context["letterbox"])
            rows = np.concatenate([boxes, dets[:, 4:6].float().cpu().numpy()], 1)
            record = {"file": context["file"], "detections": _box_records(rows, names)}
            drawing = image.copy() if getattr(args, "out", None) and not args.no_draw else None
            if protos is not None:
                self._add_masks(record, dets, protos[_batch_index(contexts, index)], config, context["letterbox"],
                                drawing)
            records.append(record)
            if drawing is not None:
                _write_image(Path(args.out) / Path(context["file"]).name, draw_detections(drawing, rows, names),
                             context["file"])
        return records

    def _add_masks(self, record, dets, protos, config, letterbox, drawing) -> None:
        """Per detection a COCO RLE mask and polygons in original pixels; translucent masks on `drawing`."""
        nm = config["num_masks"]
        masks = iter_masks(protos, dets[:, -nm:], dets[:, :4], config["input_size"], letterbox)
        start = 0
        for chunk in masks:
            chunk = chunk.cpu().numpy()
            for det_record, mask in zip(record["detections"][start:start + len(chunk)], chunk):
                det_record["mask"] = encode_rle(mask)
                det_record["polygons"] = mask_polygons(mask)
            if drawing is not None:
                draw_masks(drawing, chunk, dets[start:start + len(chunk), 5].long().tolist())
            start += len(chunk)

    def bench_stages(self, run_network, images: list[np.ndarray], config: dict, args, device: str) -> dict:
        """Milliseconds per image of each stage over `images` in batches of args.batch (after one warm-up batch).

        `run_network(batch) -> outputs` is the engine or the PyTorch reference, so both go through the same
        pre-processing and NMS and the ratio compares like with like.
        """
        nms_args = argparse.Namespace(classes=None, agnostic=False, **{**self.nms_defaults, "max_det": 300})
        segment = config.get("task") == "segment"
        totals = dict.fromkeys(("preprocess", "network", "nms") + (("masks",) if segment else ()), 0.0)
        batches = [images[i:i + args.batch] for i in range(0, len(images), args.batch)]
        for index, chunk in enumerate([batches[0]] + batches):  # the first pass warms up and is not counted
            masks = (lambda out, dets, chunk=chunk: self._assemble_masks(out, dets, chunk, config)) if segment \
                else None
            times = _stage_times(lambda: self._gpu_or_cpu_preprocess(chunk, config, device),
                                 run_network, lambda out: self.detections(out, config, nms_args), device, masks)
            if index:
                for stage, seconds in times.items():
                    totals[stage] += seconds
        per_image = {stage: 1000 * seconds / len(images) for stage, seconds in totals.items()}
        per_image["total"] = sum(per_image.values())
        return per_image

    def _assemble_masks(self, outputs, detections, images, config) -> None:
        """Every kept detection's mask in original pixels (what `records` encodes), for the bench."""
        protos = outputs[f"{self.output_name(config)}.proto"]
        nm = config["num_masks"]
        for dets, image_protos, image in zip(detections, protos, images):
            lb = letterbox_params(image.shape[:2], config["input_size"])
            for _ in iter_masks(image_protos, dets[:, -nm:], dets[:, :4], config["input_size"], lb):
                pass

    def _gpu_or_cpu_preprocess(self, images, config, device):
        if device == "cuda":
            from plugins.letterbox import preprocess_batch
            return preprocess_batch(images, config["input_size"], device)[0]
        return preprocess(images, config["input_size"])[0]


class _Classifier(ClassifierModel):
    """YOLOv5 classify's pre-processing (centred square, INTER_LINEAR, ImageNet mean/std) and top-5 records."""

    def preprocess(self, image_bgr, config):
        return yolov5_classify_input(image_bgr, config["input_size"][0])

    def preprocess_on_device(self, images_bgr, config, device):
        return yolov5_classify_torch(images_bgr, config["input_size"][0], device)

    def input_shape(self, config):
        return (3, *config["input_size"])


def _batch_index(contexts, index: int) -> int:
    """Position of contexts[index] in the network batch (items that failed to load are not in it)."""
    return sum(1 for c in contexts[:index] if c is None or "error" not in c)


def _box_records(rows: np.ndarray, names) -> list[dict]:
    return [{"box": [round(float(v), 2) for v in d[:4]], "score": round(float(d[4]), 5), "class_id": int(d[5]),
             "class_name": names[int(d[5])] if names else str(int(d[5]))} for d in rows]


def _stage_times(preprocess_fn, network_fn, nms_fn, device: str, masks_fn=None) -> dict[str, float]:
    """Seconds of each stage; on a GPU each stage is synchronised so its time is its own. `masks_fn(outputs,
    detections)`: segmentation's mask assembly, a fourth stage."""
    sync = torch.cuda.synchronize if device == "cuda" else (lambda: None)
    clock = time.perf_counter
    start = clock()
    batch = preprocess_fn()
    sync()
    after_pre = clock()
    outputs = network_fn(batch)
    sync()
    after_net = clock()
    detections = nms_fn(outputs)
    sync()
    after_nms = clock()
    times = {"preprocess": after_pre - start, "network": after_net - after_pre, "nms": after_nms - after_net}
    if masks_fn is not None:
        masks_fn(outputs, detections)
        sync()
        times["masks"] = clock() - after_nms
    return times


def _write_image(path: Path, image: np.ndarray, source: str) -> None:
    """Through a temporary file of the same extension (cv2 picks the format from it), then renamed; never over
    the input image itself."""
    refuse_write_over(path, [source])
    with atomic_path(path) as tmp:
        if not cv2.imwrite(str(tmp), image):
            raise OSError(f"cannot write image {path}")
