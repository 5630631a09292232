"""What classification models share: image batches through the model's own pre-processing, top-5 records."""
from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import torch

from zoo.vision.images import try_read_image
from zoo.vision.imagenet import CropSpec, center_crop, center_crop_torch, imagenet_classes

from .model import ZooModel


class ClassifierModel(ZooModel):
    top_k = 5

    def crop_spec(self, config: dict) -> CropSpec:
        """The family's ImageNet pre-processing numbers; the default is torchvision's (short side 256/224 of the
        crop, ImageNet mean/std) at the configured input size."""
        return CropSpec.scaled(config["input_size"])

    def preprocess(self, image_bgr: np.ndarray, config: dict) -> np.ndarray:
        """One image (HWC, BGR, uint8) to the network's input (C, H, W) float32."""
        return center_crop(image_bgr, self.crop_spec(config))

    def load_batch(self, paths: list[Path], config: dict, device: str = "cpu") -> tuple[Any, list[Any]]:
        """A float32 batch: numpy from the CPU reference, or a torch tensor pre-processed on `device` when it is
        CUDA (the uint8 image is uploaded once; resize, crop and normalisation run there)."""
        items, contexts = [], []
        on_gpu = str(device).startswith("cuda")
        for path in paths:
            image, reason = try_read_image(path)
            if image is None:
                contexts.append({"file": str(path), "error": f"{reason}, skipped"})
                continue
            if on_gpu:
                items.append(center_crop_torch(torch.from_numpy(image).to(device), self.crop_spec(config)))
            else:
                items.append(self.preprocess(image, config))
            contexts.append({"file": str(path)})
        if not items:
            return np.zeros((0, *self.input_shape(config)), np.float32), contexts
        return (torch.stack(items) if on_gpu else np.stack(items)), contexts

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
            records.append({**(context or {"index": i}), "top": top})
        return records
