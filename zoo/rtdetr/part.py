"""RT-DETR's detection part: the network already ends in its top-k (B, K, 6) rows [cx, cy, w, h, score, class],
boxes normalised to the input, scores descending. What is left is upstream's predictor: keep the rows whose score
is above --conf (and in --classes), no NMS. The input is the image stretched to the network size (upstream's
RT-DETR predictor resizes without keeping the aspect ratio: no letterbox padding), so a box goes back to the
original image by scaling x by its width and y by its height. Records, drawing, agreement and bench stages are the
detect part's."""
from __future__ import annotations

import cv2
import numpy as np
import torch

from zoo.engine.flags import bounded, non_negative_int, probability
from zoo.tasks.detect import Detect
from zoo.vision.letterbox import check_image, size_hw
from zoo.vision.synthetic import draw_scene, scene_sizes

DETR_DEFAULTS = dict(conf=0.25, iou=0.7, max_det=300)   # iou is unused (no NMS); kept for the shared bench/agreement


class DetrDetect(Detect):
    stages = ("preprocess", "network", "threshold")

    def __init__(self):
        super().__init__(objectness=False, nms_defaults=DETR_DEFAULTS)

    def add_infer_arguments(self, parser) -> None:
        d = self.nms_defaults
        parser.add_argument("--conf", type=probability, default=d["conf"],
                            help=f"score threshold: rows scoring above it are kept (default {d['conf']}; no NMS)")
        parser.add_argument("--max-det", type=bounded(int, 1, 100_000), default=d["max_det"],
                            help=f"detections kept per image, best first (default {d['max_det']}; the network "
                                 "gives at most its query count)")
        parser.add_argument("--classes", type=non_negative_int, nargs="+",
                            help="keep only these class ids (each below the model's class count)")
        parser.add_argument("--no-draw", action="store_true", help="do not write annotated images to --out")

    def preprocess(self, images, config, device, with_params=False):
        batch = stretch(images, config.input_size)
        if device == "cuda":
            batch = torch.from_numpy(batch).to(device)
        return (batch, [None] * len(images)) if with_params else batch

    def sample_input(self, config, batch: int, seed: int = 0) -> np.ndarray:
        return stretch([draw_scene(h, w, seed + i) for i, (h, w) in enumerate(scene_sizes(batch, seed))],
                       config.input_size)

    def detections(self, outputs: dict, config, args) -> list[torch.Tensor]:
        """Per image (K, 6) [x1, y1, x2, y2, score, class] in network-input pixels, best first."""
        rows = self.output(outputs, config).float()
        h, w = config.input_size
        scale = torch.tensor([w, h, w, h], dtype=rows.dtype, device=rows.device)
        kept = []
        for item in rows:
            keep = item[:, 4] > args.conf
            if getattr(args, "classes", None):
                keep &= torch.isin(item[:, 5], torch.tensor(args.classes, dtype=item.dtype, device=item.device))
            item = item[keep][: args.max_det]
            xy, wh = item[:, :2], item[:, 2:4]
            kept.append(torch.cat([torch.cat([xy - wh / 2, xy + wh / 2], 1) * scale, item[:, 4:6]], 1))
        return kept

    def scaled_rows(self, dets, config, context) -> np.ndarray:
        rows = dets[:, :6].float().cpu().numpy().copy()
        h, w = config.input_size
        oh, ow = context["image"].shape[:2]
        rows[:, [0, 2]] = (rows[:, [0, 2]] * (ow / w)).clip(0, ow)
        rows[:, [1, 3]] = (rows[:, [1, 3]] * (oh / h)).clip(0, oh)
        return rows


def stretch(images_bgr, size) -> np.ndarray:
    """Resize each image to the network size (bilinear, aspect ratio not kept), BGR -> RGB, CHW, / 255."""
    if isinstance(images_bgr, np.ndarray) and images_bgr.ndim == 3:
        images_bgr = [images_bgr]
    out_h, out_w = size_hw(size)
    batch = np.empty((len(images_bgr), 3, out_h, out_w), dtype=np.float32)
    for b, image in enumerate(images_bgr):
        check_image(image)
        if image.shape[:2] != (out_h, out_w):
            image = cv2.resize(image, (out_w, out_h), interpolation=cv2.INTER_LINEAR)
        np.divide(image.transpose(2, 0, 1)[::-1], np.float32(255.0), out=batch[b], dtype=np.float32)
    return batch
