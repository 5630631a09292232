"""Seeded random weights for a table's module, with BatchNorm statistics that keep activations O(1) through the
whole depth (random detectors otherwise vanish or explode over 20-40 convolutions).

Conv weights ~ N(0, 1/fan_in), biases ~ N(0, 0.1); BN gamma ~ U(0.5, 1.5), beta ~ N(0, 0.2); running statistics
from one float64 pass over calibration images, perturbed per channel (zoo.engine.model.batchnorm_statistics_from_).
Anchored heads (YOLOv5): output biases N(0, 1), calibration on [smooth image, noise] at 256. Anchor-free heads:
box outputs N(0, 1); class outputs centred with unit spread on the calibration images and shifted to -4.5, so a
few % of the cells score above 0.25 as with a trained detector; DFL's fixed bins are kept; calibration on a smooth
image and five letterboxed synthetic scenes. Transposed convolutions and Linear layers are seeded first.
"""
from __future__ import annotations

import math

import torch
from torch import nn

from zoo.engine.model import batchnorm_statistics_from_, random_batchnorm_affine_, random_conv_

from .blocks.detect import DFL, Detect
from .blocks.yolov5 import Detect as AnchoredDetect


@torch.no_grad()
def randomize(model: nn.Module, seed: int = 0, calib_size: int | None = None) -> nn.Module:
    """`calib_size`: the calibration images' side (default 256 for anchored heads, 128 for the others)."""
    if any(isinstance(m, AnchoredDetect) for m in model.modules()):
        _seed_linear(model, seed + 1)
        return _anchored(model, seed, calib_size or 256)
    _seed_linear(model, seed + 7)
    return _anchor_free(model, seed, calib_size or 128)


def _seed_linear(model: nn.Module, seed: int) -> None:
    g = torch.Generator().manual_seed(seed)
    for m in model.modules():
        if isinstance(m, nn.ConvTranspose2d):
            m.weight.copy_(torch.randn(m.weight.shape, generator=g) / math.sqrt(m.in_channels))
            m.bias.copy_(torch.randn(m.bias.shape, generator=g) * 0.1)
        elif isinstance(m, nn.Linear):
            m.weight.copy_(torch.randn(m.weight.shape, generator=g) / math.sqrt(m.in_features))
            m.bias.copy_(torch.randn(m.bias.shape, generator=g) * 0.5)


def _anchored(model: nn.Module, seed: int, calib_size: int) -> nn.Module:
    g = torch.Generator().manual_seed(seed)
    detect_convs = {id(c) for m in model.modules() if isinstance(m, AnchoredDetect) for c in m.m}
    for m in model.modules():
        if isinstance(m, nn.Conv2d):
            random_conv_(m, g, 1.0 if id(m) in detect_convs else 0.1)
        elif isinstance(m, nn.BatchNorm2d):
            random_batchnorm_affine_(m, g)
    smooth = torch.rand(1, 3, 8, 8, generator=g, dtype=torch.float64)
    smooth = nn.functional.interpolate(smooth, size=(calib_size, calib_size), mode="bilinear", align_corners=False)
    noise = torch.rand(1, 3, calib_size, calib_size, generator=g, dtype=torch.float64)
    batchnorm_statistics_from_(model, torch.cat((smooth, noise)), g)
    return model


def _anchor_free(model: nn.Module, seed: int, calib_size: int) -> nn.Module:
    g = torch.Generator().manual_seed(seed)
    heads = [m for m in model.modules() if isinstance(m, Detect)]
    head_outputs = {id(seq[-1]) for h in heads for seq in list(h.cv2) + list(h.cv3)}
    class_outputs = {id(seq[-1]) for h in heads for seq in h.cv3}
    fixed = {id(h.dfl.conv) for h in heads if isinstance(h.dfl, DFL)}
    for m in model.modules():
        if isinstance(m, nn.Conv2d) and id(m) not in fixed:
            if id(m) in class_outputs:
                random_conv_(m, g, bias_std=0.5, bias_mean=-4.5)
            else:
                random_conv_(m, g, 1.0 if id(m) in head_outputs else 0.1)
        elif isinstance(m, nn.BatchNorm2d):
            random_batchnorm_affine_(m, g)

    from zoo.vision.letterbox import preprocess
    from zoo.vision.synthetic import draw_scene, scene_sizes

    smooth = torch.rand(1, 3, 8, 8, generator=g, dtype=torch.float64)
    smooth = nn.functional.interpolate(smooth, size=(calib_size, calib_size), mode="bilinear", align_corners=False)
    scenes = preprocess([draw_scene(h, w, seed + i) for i, (h, w) in enumerate(scene_sizes(5, seed))],
                        (calib_size, calib_size))[0]
    spread: dict[int, tuple[torch.Tensor, float]] = {}

    def measure(conv: nn.Conv2d, _inputs, output: torch.Tensor) -> None:
        raw = output - conv.bias.view(1, -1, 1, 1)
        spread[id(conv)] = raw.mean((0, 2, 3)), float(raw.std())

    class_convs = [m for m in model.modules() if id(m) in class_outputs]
    batchnorm_statistics_from_(model, torch.cat((smooth, torch.from_numpy(scenes).to(torch.float64))), g,
                               [(conv, measure) for conv in class_convs])
    for conv in class_convs:  # centred logits of unit spread on every level, whatever the depth before them
        mean, std = spread[id(conv)]
        std = max(std, 1e-6)
        conv.weight.div_(std)
        conv.bias.sub_((mean / std).to(conv.bias.dtype))
    return model
