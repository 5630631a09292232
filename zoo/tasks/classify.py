"""Classification as a part: the family's crop (ultralytics: short side, centre, /255; YOLOv5 v7.0: the centred
square, ImageNet mean and std), top-5 records with class names, top-1 agreement. The network's output is the
probabilities (ultralytics' softmax) or logits (YOLOv5), softmaxed here when needed."""
from __future__ import annotations

import numpy as np
import torch

from zoo.engine.classifier import ClassifierModel
from zoo.engine.errors import UserError
from zoo.vision.yolo_classify import (center_crop_torch, ultralytics_classify_input, ultralytics_spec,
                                      yolov5_classify_input, yolov5_classify_torch)


class _Crop(ClassifierModel):
    def __init__(self, yolov5: bool):
        self.yolov5 = yolov5

    def preprocess(self, image_bgr, config):
        size = config["input_size"][0]
        return yolov5_classify_input(image_bgr, size) if self.yolov5 else ultralytics_classify_input(image_bgr, size)

    def preprocess_on_device(self, images_bgr, config, device):
        size = config["input_size"][0]
        if self.yolov5:
            return yolov5_classify_torch(images_bgr, size, device)
        return center_crop_torch(images_bgr, ultralytics_spec(size), device)

    def input_shape(self, config):
        return (3, *config["input_size"])

    def probabilities(self, outputs):
        values = next(iter(outputs.values())).float().cpu()
        values = values.reshape(len(values), -1)
        return torch.softmax(values, 1) if self.yolov5 else values  # ultralytics' network ends in softmax


class Classify:
    name = "classify"
    kind = "classify"
    default_size = (224, 224)
    default_classes = 1000
    stages = ()

    def __init__(self, yolov5: bool = False):
        self.crop = _Crop(yolov5)

    @staticmethod
    def _plain(config) -> dict:
        return {"input_size": list(config.input_size), "class_names": list(config.class_names or []) or None}

    def add_infer_arguments(self, parser) -> None:
        pass

    def check_infer_arguments(self, args, config) -> None:
        pass

    def sample_input(self, config, batch: int, seed: int = 0) -> np.ndarray:
        from zoo.vision.synthetic import draw_scene, scene_sizes
        return np.stack([self.crop.preprocess(draw_scene(h, w, seed + i), self._plain(config))
                         for i, (h, w) in enumerate(scene_sizes(batch, seed))])

    def load_images(self, items, config, device="cpu"):
        return self.crop.load_images(items, self._plain(config), device)

    def records(self, outputs, contexts, config, args) -> list[dict]:
        return self.crop.records(outputs, contexts, self._plain(config), args)

    agreement_terms = ("top-1 classes", "the same class for the image")

    def agreement(self, fp32_outputs, low_outputs, config) -> tuple[int, int]:
        """(images whose top-1 class agrees, images)."""
        ref, low = fp32_outputs[config.output_name], low_outputs[config.output_name]
        return int((ref.argmax(1) == low.argmax(1)).sum()), len(ref)

    def bench_stages(self, run_network, images, config, args, device) -> dict:
        raise UserError("classification has no per-stage benchmark; run bench without --source")
