"""YOLOv5 as a model of the zoo: configuration from weights, letterbox in, NMS and boxes in original pixels out."""
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
from zoo.engine.workflow import UserError, bounded, non_negative_int, probability
from zoo.vision.coco import COCO_NAMES
from zoo.vision.draw import draw_detections
from zoo.vision.letterbox import preprocess, scale_boxes
from zoo.vision.nms import batched_nms, count_matches
from zoo.vision.synthetic import draw_scene, scene_sizes

from .builder import DECODES, define_yolov5
from .config import YoloV5Config, infer_config
from .model import VARIANTS, random_yolov5


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
    summary = ("YOLOv5 v7.0 detection (n/s/m/l/x and P6 n6..x6, or any custom width/depth/classes read from the "
               "weights): build, infer, validate, bench.")

    def add_arguments(self, parser):
        variants = sorted(VARIANTS) + [v + "6" for v in sorted(VARIANTS)]
        parser.add_argument("--variant", choices=variants,
                            help="random-weight variant when no --weights are given (default n); with --weights it "
                                 "must agree with them")
        parser.add_argument("--num-classes", type=bounded(int, 1, 100_000),
                            help="classes of random weights (default 80); with --weights it must agree with them")
        parser.add_argument("--input-size", type=parse_size, default=(640, 640),
                            help="network input, N or HxW, multiples of the largest stride (default 640)")
        parser.add_argument("--decode", choices=DECODES, default="plugin",
                            help="plugin: the zoo::yolo_decode plugin (kernel embedded in the engine); layers: plain "
                                 "TensorRT layers, an engine without custom plugins (default plugin)")

    def add_infer_arguments(self, parser):
        parser.add_argument("--conf", type=probability, default=0.25, help="confidence threshold (default 0.25)")
        parser.add_argument("--iou", type=probability, default=0.45, help="NMS IoU threshold (default 0.45)")
        parser.add_argument("--max-det", type=bounded(int, 1, 100_000), default=1000,
                            help="detections kept per image (default 1000)")
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
        return random_yolov5(variant.rstrip("6"), args.num_classes or 80, seed, p6=variant.endswith("6")).eval()

    def config_from_weights(self, weights, args):
        config = infer_config(weights.arrays(), source_name=weights.source)
        # one rule for every model: a flag that disagrees with the weights is an error, never silently ignored
        if getattr(args, "variant", None) and args.variant != config.variant:
            raise UserError(f"--variant {args.variant} disagrees with {weights.source}, which holds "
                            f"yolov5{config.variant or '-custom'}")
        if getattr(args, "num_classes", None) and args.num_classes != config.num_classes:
            raise UserError(f"--num-classes {args.num_classes} disagrees with {weights.source}, which has "
                            f"{config.num_classes} classes")
        height, width = args.input_size
        config.check_input_size(height, width)
        values = dataclasses.asdict(config)
        values.update(variant=config.variant or "custom", input_size=[height, width], decode=args.decode)
        return values

    def variant(self, config):
        return f"yolov5{config['variant']}" if config["variant"] != "custom" else "yolov5-custom"

    def reference_module(self, config):
        return to_config(config).build_module()

    def input_shape(self, config):
        return (3, *config["input_size"])

    def define(self, net, weights, config, x):
        return [define_yolov5(net, weights, to_config(config), x, config.get("decode", "plugin"))]

    def sample_input(self, config, batch, seed=0):
        """Letterboxed synthetic scenes of varied sizes, through the one pre-processing used everywhere."""
        scenes = [draw_scene(h, w, seed + i) for i, (h, w) in enumerate(scene_sizes(batch, seed))]
        return preprocess(scenes, config["input_size"])[0]

    # --- inference
    def load_images(self, items, config, device="cpu"):
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
        """NMS (upstream semantics) on the decoded output, on whichever device it lives on."""
        name = f"model.{33 if config['p6'] else 24}"
        if name not in outputs:  # an engine whose header's config does not describe its network
            raise UserError(f"the network has no output {name!r} (it has {sorted(outputs)[:4]}): the engine "
                            f"header's configuration does not match the engine")
        prediction = outputs[name]
        return batched_nms(prediction, args.conf, args.iou, args.classes, args.agnostic, args.max_det)

    def agreement(self, fp32_outputs: dict, low_outputs: dict, config: dict) -> tuple[int, int]:
        """(FP32 detections reproduced by the low-precision outputs, FP32 detections), at the infer defaults."""
        args = argparse.Namespace(conf=0.25, iou=0.45, classes=None, agnostic=False, max_det=300)
        reference, other = self.detections(fp32_outputs, config, args), self.detections(low_outputs, config, args)
        return sum(count_matches(r, o) for r, o in zip(reference, other)), sum(len(r) for r in reference)

    def records(self, outputs, contexts, config, args):
        names = config.get("class_names") or (COCO_NAMES if config["num_classes"] == 80 else None)
        kept = iter(self.detections(outputs, config, args))
        records = []
        for context in contexts:
            if "error" in context:
                records.append({"file": context["file"], "error": context["error"]})
                continue
            dets = next(kept).float().cpu().numpy()
            image = context.get("image")
            if image is None:  # a .npy input: boxes stay in the network input's pixels
                records.append({"index": context.get("index"), "detections": _detections(dets, names)})
                continue
            dets[:, :4] = scale_boxes(dets[:, :4], config["input_size"], image.shape[:2], context["letterbox"])
            records.append({"file": context["file"], "detections": _detections(dets, names)})
            if getattr(args, "out", None) and not args.no_draw:
                _write_image(Path(args.out) / Path(context["file"]).name, draw_detections(image, dets, names),
                             context["file"])
        return records


    def bench_stages(self, run_network, images: list[np.ndarray], config: dict, args, device: str) -> dict:
        """Milliseconds per image of each stage over `images` in batches of args.batch (after one warm-up batch).

        `run_network(batch) -> outputs` is the engine or the PyTorch reference, so both go through the same
        pre-processing and NMS and the ratio compares like with like.
        """
        nms_args = argparse.Namespace(conf=0.25, iou=0.45, classes=None, agnostic=False, max_det=300)
        totals = dict.fromkeys(("preprocess", "network", "nms"), 0.0)
        batches = [images[i:i + args.batch] for i in range(0, len(images), args.batch)]
        for index, chunk in enumerate([batches[0]] + batches):  # the first pass warms up and is not counted
            times = _stage_times(lambda: self._gpu_or_cpu_preprocess(chunk, config, device),
                                 run_network, lambda out: self.detections(out, config, nms_args), device)
            if index:
                for stage, seconds in times.items():
                    totals[stage] += seconds
        per_image = {stage: 1000 * seconds / len(images) for stage, seconds in totals.items()}
        per_image["total"] = sum(per_image.values())
        return per_image

    def _gpu_or_cpu_preprocess(self, images, config, device):
        if device == "cuda":
            from plugins.letterbox import preprocess_batch
            return preprocess_batch(images, config["input_size"], device)[0]
        return preprocess(images, config["input_size"])[0]


def _stage_times(preprocess_fn, network_fn, nms_fn, device: str) -> dict[str, float]:
    """Seconds of each stage; on a GPU each stage is synchronised so its time is its own."""
    sync = torch.cuda.synchronize if device == "cuda" else (lambda: None)
    clock = time.perf_counter
    start = clock()
    batch = preprocess_fn()
    sync()
    after_pre = clock()
    outputs = network_fn(batch)
    sync()
    after_net = clock()
    nms_fn(outputs)
    sync()
    return {"preprocess": after_pre - start, "network": after_net - after_pre, "nms": clock() - after_net}


def _detections(dets: np.ndarray, names) -> list[dict]:
    return [{"box": [round(float(v), 2) for v in d[:4]], "score": round(float(d[4]), 5), "class_id": int(d[5]),
             "class_name": names[int(d[5])] if names else str(int(d[5]))} for d in dets]


def _write_image(path: Path, image: np.ndarray, source: str) -> None:
    """Through a temporary file of the same extension (cv2 picks the format from it), then renamed; never over
    the input image itself."""
    refuse_write_over(path, [source])
    with atomic_path(path) as tmp:
        if not cv2.imwrite(str(tmp), image):
            raise OSError(f"cannot write image {path}")
