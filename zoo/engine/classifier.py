"""What classification models share: image batches through the model's own pre-processing, top-5 records."""
from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import torch

from zoo.vision.imagenet import CropSpec, center_crop, center_crop_torch, imagenet_classes

from .files import refuse_write_over, write_bytes_atomic
from .model import ZooModel, readable_images


def add_classifier_flags(parser, variants, default_variant: str | None, input_note: str = "") -> None:
    """The flags most classifier families share: --variant (random weights use it; with --weights it must agree),
    --num-classes and --input-size (224 by default). `input_note` says what sizes the family takes."""
    if variants:
        parser.add_argument("--variant", choices=tuple(variants),
                            help=f"random weights use it (default {default_variant}); with --weights it must agree")
    parser.add_argument("--num-classes", type=int, default=1000, help="classes of random weights (default 1000)")
    note = f", {input_note}" if input_note else ""
    parser.add_argument("--input-size", type=int, default=224, help=f"input height and width{note} (default 224)")


def check_variant(config: dict, args, source: str) -> None:
    """One rule for every family: a --variant that disagrees with the weights is an error, never ignored."""
    if getattr(args, "variant", None) and args.variant != config["variant"]:
        article = "an" if config["variant"][:1] in "aeiou" else "a"
        raise ValueError(f"--variant {args.variant} disagrees with {source}, which holds {article} {config['variant']}")


def check_stride_32(size: int, family: str) -> None:
    """Input sizes of the families whose total stride is 32 (and whose heads need every stage)."""
    if size % 32 or size < 32:
        raise ValueError(f"--input-size {size} is not a positive multiple of 32 ({family}'s stride)")


class ClassifierModel(ZooModel):
    top_k = 5

    def output_kind(self, config: dict) -> str:
        return "classify"

    def add_infer_arguments(self, parser) -> None:
        parser.add_argument("--no-draw", action="store_true",
                            help="do not write images with their top classes drawn to --out")

    def crop_spec(self, config: dict) -> CropSpec:
        """The family's ImageNet pre-processing numbers; the default is torchvision's (short side 256/224 of the
        crop, ImageNet mean/std) at the configured input size."""
        return CropSpec.scaled(config["input_size"])

    def preprocess(self, image_bgr: np.ndarray, config: dict) -> np.ndarray:
        """One image (HWC, BGR, uint8) to the network's input (C, H, W) float32."""
        return center_crop(image_bgr, self.crop_spec(config))

    def preprocess_on_device(self, images_bgr: list[np.ndarray], config: dict, device: str):
        """The same pre-processing as torch ops on `device` for a whole batch, (B, C, H, W): each uint8 image is
        uploaded once, and resize, crop and normalisation run there. None when the family has its own CPU
        `preprocess` and no device version of it (then the CPU version runs)."""
        if type(self).preprocess is not ClassifierModel.preprocess:
            return None
        spec = self.crop_spec(config)
        return torch.stack([center_crop_torch(torch.from_numpy(image).to(device), spec) for image in images_bgr])

    def load_images(self, images, config: dict, device: str = "cpu") -> tuple[Any, list[Any]]:
        """A float32 batch: numpy from the CPU reference, or a torch tensor pre-processed on `device` (CUDA)."""
        decoded, contexts = readable_images(images)  # the contexts' images are for drawing, not the record
        if decoded and device != "cpu":
            batch = self.preprocess_on_device(decoded, config, device)
            if batch is not None:
                return batch, contexts
        items = [self.preprocess(image, config) for image in decoded]
        batch = np.stack(items) if items else np.zeros((0, *self.input_shape(config)), np.float32)
        return batch, contexts

    def class_names(self, config: dict, num_classes: int) -> list[str] | None:
        """The checkpoint's names, else ImageNet's for a 1000-way output, else none (ids only)."""
        names = config.get("class_names")
        if names:
            return names
        return list(imagenet_classes()) if num_classes == 1000 else None

    def probabilities(self, outputs: dict[str, torch.Tensor]) -> torch.Tensor:
        """Class probabilities from the network outputs (softmax of logits unless the network ends in softmax)."""
        logits = next(iter(outputs.values())).float().cpu()
        return torch.softmax(logits.reshape(len(logits), -1), dim=1)

    def records(self, outputs, contexts, config, args) -> list[dict]:
        probs = self.probabilities(outputs)
        names = self.class_names(config, probs.shape[1])
        records = [c for c in contexts if isinstance(c, dict) and "error" in c]
        good = [c for c in contexts if not (isinstance(c, dict) and "error" in c)]
        for i, context in enumerate(good):
            scores, ids = probs[i].topk(min(self.top_k, probs.shape[1]))
            top = [{"class_id": int(c), "score": round(float(s), 6),
                    **({"class_name": names[int(c)]} if names else {})} for s, c in zip(scores, ids)]
            record = {**{k: v for k, v in (context or {"index": i}).items() if k != "image"}, "top": top}
            records.append(record)
            if context and "image" in context and getattr(args, "out", None) and not getattr(args, "no_draw", False):
                _write_drawn(Path(args.out) / Path(context["file"]).name, context["image"], record, context["file"])
        return records


def _write_drawn(path: Path, image: np.ndarray, record: dict, source: str) -> None:
    """The image with its top classes drawn, written atomically next to predictions.jsonl (never over `source`)."""
    import cv2
    from zoo.vision.draw import draw_record
    refuse_write_over(path, [source])
    ok, encoded = cv2.imencode(path.suffix or ".jpg", draw_record(image, record))
    if not ok:
        raise ValueError(f"{path}: cannot encode an image of this type")
    write_bytes_atomic(path, encoded.tobytes())
