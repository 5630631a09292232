"""Monocular depth as a part (YOLO26's Depth): the network's depth in metres at the input size (upstream's export
output; zoo/yolo/blocks/dense.py) mapped back to the original image (padding cropped, bilinear resize). A record
gives the depth's minimum, median and maximum and how the PNG encodes it (zoo.vision.depth_map: ln(metres) =
value / 4096 - 8); `infer --out` writes the 16-bit log-depth PNG and a colour map (near bright), without --out the
record carries the PNG (base64) for `serve` to draw. Agreement of FP16/INT8 with FP32: pixels whose depth is
within a factor 1.25 of FP32's (depth evaluation's delta-1, FP32 as the truth)."""
from __future__ import annotations

import base64

from pathlib import Path

import numpy as np
import torch

from zoo.vision.depth_map import (LOG_DEPTH_OFFSET, LOG_DEPTH_SCALE, colorize_log_depth, decode_log_depth,
                                  encode_log_depth, png_bytes)
from zoo.yolo.blocks.dense import FULL

from .dense import DensePart

DELTA1 = 1.25   # depth evaluation's delta-1 threshold: max(pred / true, true / pred) < 1.25


class Depth(DensePart):
    name = "depth"

    def network_maps(self, outputs, config) -> np.ndarray:
        full = torch.as_tensor(self.output(outputs, f"{config.output_name}{FULL}")).float().cpu()
        return full[:, 0].numpy()

    def describe(self, values, config, embed: bool) -> dict:
        depth = {"min_m": round(float(values.min()), 4), "median_m": round(float(np.median(values)), 4),
                 "max_m": round(float(values.max()), 4),
                 "png_encoding": {"log_depth_scale": LOG_DEPTH_SCALE, "log_depth_offset": LOG_DEPTH_OFFSET}}
        if embed:
            depth["png_base64"] = base64.b64encode(png_bytes(encode_log_depth(values))).decode()
        return {"depth": depth}

    def write_files(self, out, context, values, record, config, draw: bool) -> None:
        encoded = encode_log_depth(values)
        path = self.file_beside(out, context, ".depth.png")
        self.write_picture(path, encoded, context)
        record["depth"]["png"] = str(path)
        if draw:
            self.write_picture(out / Path(context["file"]).name,
                               colorize_log_depth(decode_log_depth(encoded)), context)

    agreement_terms = ("pixel depths", "within a factor 1.25 of FP32's: delta-1, at the head's resolution")

    def agreement(self, fp32_outputs, low_outputs, config) -> tuple[int, int]:
        """(pixels whose depth is within a factor 1.25 of FP32's, pixels), at the head's resolution (output 0):
        the delta-1 accuracy of depth evaluation, with FP32 as the ground truth."""
        reference = torch.as_tensor(self.output(fp32_outputs, config.output_name)).float().cpu()
        other = torch.as_tensor(self.output(low_outputs, config.output_name)).float().cpu()
        ratio = torch.maximum(other / reference, reference / other)
        return int((ratio < DELTA1).sum()), int(reference.numel())
