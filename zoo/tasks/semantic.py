"""Semantic segmentation as a part (YOLO26's SemanticSegment): the network's baked class map (B, H, W) at the input
size (upstream's TensorRT export output; zoo/yolo/blocks/dense.py) mapped back to the original image (padding
cropped, nearest resize). A record lists the classes present, each with its share of the image and its pixels as a
COCO RLE mask (what `serve` draws); `infer --out` writes the class map as a PNG of class ids (8-bit up to 256
classes, else 16-bit) and the image with a colour per class blended over it. Agreement of FP16/INT8 with FP32:
pixels whose class agrees (mean IoU beside it in `agreement_report`)."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from zoo.vision.draw import draw_record
from zoo.vision.masks import encode_rle
from zoo.yolo.blocks.dense import CLASSES, class_map_reference

from .dense import DensePart


class Semantic(DensePart):
    name = "semantic"
    default_classes = 19          # upstream's default (Cityscapes)
    nearest = True

    def network_maps(self, outputs, config) -> np.ndarray:
        return np.asarray(torch.as_tensor(self.output(outputs, f"{config.output_name}{CLASSES}")).cpu())

    def describe(self, values, config, embed: bool) -> dict:
        names = config.class_names
        ids, counts = np.unique(values, return_counts=True)
        segments = []
        for class_id, count in zip(ids.tolist(), counts.tolist()):
            segments.append({"class_id": int(class_id), "class_name": names[class_id] if names else str(class_id),
                             "share": round(count / values.size, 5), "mask": encode_rle(values == class_id)})
        return {"segments": segments}

    def write_files(self, out, context, values, record, config, draw: bool) -> None:
        path = self.file_beside(out, context, ".classes.png")
        self.write_picture(path, values.astype(np.uint8 if config.num_classes <= 256 else np.uint16), context)
        record["class_map"] = str(path)
        if draw:
            self.write_picture(out / Path(context["file"]).name, draw_record(context["image"], record),
                               context)

    agreement_terms = ("pixel classes", "the same class at the pixel, network input's pixels")

    def agreement(self, fp32_outputs, low_outputs, config) -> tuple[int, int]:
        """(pixels of the input whose class agrees with FP32's, pixels), from the logits (output 0)."""
        reference, other = self.class_maps(fp32_outputs, config), self.class_maps(low_outputs, config)
        return int((reference == other).sum()), int(reference.numel())

    def class_maps(self, outputs, config) -> torch.Tensor:
        return class_map_reference(torch.as_tensor(self.output(outputs, config.output_name)).float().cpu())


def mean_iou(reference: torch.Tensor, other: torch.Tensor, num_classes: int) -> float:
    """Mean over the classes present in either map of |both| / |either|."""
    ious = []
    for c in range(num_classes):
        a, b = reference == c, other == c
        union = int((a | b).sum())
        if union:
            ious.append(int((a & b).sum()) / union)
    return float(np.mean(ious)) if ious else 1.0
