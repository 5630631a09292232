"""Seeded random weights for a table's module, with BatchNorm statistics that keep activations O(1) through the
whole depth (random detectors otherwise vanish or explode over 20-40 convolutions).

Conv weights ~ N(0, 1/fan_in), biases ~ N(0, 0.1); BN gamma ~ U(0.5, 1.5), beta ~ N(0, 0.2); running statistics
from one float64 pass over calibration images, perturbed per channel (zoo.engine.model.batchnorm_statistics_from_).
Anchored heads (YOLOv5): output biases N(0, 1), calibration on [smooth image, noise] at 256. Anchor-free heads: box
outputs N(0, 1) (reg_max 1's distances N(3, 0.5): positive, as trained); class outputs centred with unit spread on
the calibration images and shifted to -4.5, so a few % of the cells score above 0.25 as with a trained detector;
DFL's fixed bins are kept; calibration on a smooth image and five letterboxed synthetic scenes. Transposed
convolutions and Linear layers are seeded first.
Attention (C2PSA, C3k2's attention form): where the calibration images give logits q.k * scale beyond +-10, the
q and k channels of `qkv`'s BatchNorm are scaled down to that bound; random weights deep in a YOLO26 table otherwise
give logits of several hundred, a softmax that is a hard argmax whose FP32 rounding (1e-4 off FP64 in PyTorch
itself) is no test of the layers.
"""
from __future__ import annotations

import math
from typing import Sequence

import torch
from torch import nn

from zoo.engine.model import batchnorm_statistics_from_, random_batchnorm_affine_, random_conv_

from .blocks.detect import DFL, Detect
from .blocks.psa import Attention
from .blocks.yolov5 import Detect as AnchoredDetect


def calibration_size(input_size: Sequence[int] | None, anchored: bool) -> int | None:
    """The calibration images' side for random weights that will run at `input_size` (None: randomize's default).
    Anchor-free heads: about the input's size (a multiple of 64, every table's largest stride, up to 640), since
    with statistics taken at 128 a deep random network's activations grow far beyond O(1) on larger inputs and its
    outputs saturate. YOLOv5's anchored heads keep their 256 and noise (at 640 they saturated)."""
    size = min(max(input_size or (0,)), 640) // 64 * 64
    return size if size > 128 and not anchored else None


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
    boxes = [seq for h in heads for name in ("cv2", "one2one_cv2") if hasattr(h, name) for seq in getattr(h, name)]
    classes = [seq for h in heads for name in ("cv3", "one2one_cv3") if hasattr(h, name) for seq in getattr(h, name)]
    head_outputs = {id(seq[-1]) for seq in boxes + classes}
    class_outputs = {id(seq[-1]) for seq in classes}
    # reg_max 1 (YOLO26): the box outputs are the distances themselves, which a trained head keeps positive; centred
    # on 0 they would give boxes with x1 > x2 half the time, which no IoU (so no precision agreement) can match
    distance_outputs = {id(seq[-1]) for h in heads if h.reg_max == 1
                        for name in ("cv2", "one2one_cv2") if getattr(h, name, None) is not None
                        for seq in getattr(h, name)}
    fixed = {id(h.dfl.conv) for h in heads if isinstance(h.dfl, DFL)}
    for m in model.modules():
        if isinstance(m, nn.Conv2d) and id(m) not in fixed:
            if id(m) in class_outputs:
                random_conv_(m, g, bias_std=0.5, bias_mean=-4.5)
            elif id(m) in distance_outputs:
                random_conv_(m, g, bias_std=0.5, bias_mean=3.0)
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
    images = torch.cat((smooth, torch.from_numpy(scenes).to(torch.float64)))
    _measure_other_branch(model, heads, images, [conv for conv in class_convs if id(conv) not in spread], measure)
    if any(hasattr(h, "one2one_cv3") for h in heads):  # end-to-end: spread also on small noise (see below)
        half = calib_size // 2
        _widen_spread(model, heads, torch.rand(2, 3, half, half, generator=g, dtype=torch.float64), class_convs,
                      spread)
    for conv in class_convs:  # centred logits of unit spread on every level, whatever the depth before them
        mean, std = spread[id(conv)]
        std = max(std, 1e-6)
        conv.weight.div_(std)
        conv.bias.sub_((mean / std).to(conv.bias.dtype))
    images = torch.cat((smooth, torch.from_numpy(scenes).to(torch.float64)))
    half = calib_size // 2  # small inputs (2 x 2 cells at stride 32) and noise give the largest logits
    _temper_attention(model, [images, nn.functional.interpolate(images, size=(half, half), mode="bilinear"),
                              torch.rand(2, 3, half, half, generator=g, dtype=torch.float64)])
    _moderate_log_depth(model, [images, nn.functional.interpolate(images, size=(half, half), mode="bilinear"),
                                torch.rand(2, 3, half, half, generator=g, dtype=torch.float64)])
    return model


@torch.no_grad()
def _moderate_log_depth(model: nn.Module, batches: list[torch.Tensor]) -> None:
    """A Depth head's log-depth (its last conv, before the clamp to [-4, 5] and exp) centred on upstream's initial
    bias 0.182 (about 1.2 m) and kept within +-2 of it on scenes, small inputs and noise, as trained weights keep it
    off the clamp: unscaled random weights sit on it, where exp turns FP32's rounding of ~5 into a relative depth
    error near the 1e-4 tolerance."""
    from .blocks.dense import Depth
    convs = [m.head[-1] for m in model.modules() if isinstance(m, Depth)]
    if not convs:
        return
    raw: dict[int, list] = {id(c): [] for c in convs}
    hooks = [c.register_forward_hook(lambda c, _i, out: raw[id(c)].append((out - c.bias.view(1, -1, 1, 1)).flatten()))
             for c in convs]
    dtype, training = next(model.parameters()).dtype, model.training
    try:
        model.to(torch.float64).eval()
        for batch in batches:
            model(batch)
    finally:
        for hook in hooks:
            hook.remove()
        model.to(dtype).train(training)
    for conv in convs:
        values = torch.cat(raw[id(conv)])
        mean = values.mean()
        gain = 2.0 / max(float((values - mean).abs().max()), 1e-6)
        conv.weight.mul_(gain)
        conv.bias.copy_((0.182 - mean * gain).to(conv.bias.dtype))


def _measure_other_branch(model: nn.Module, heads: list, images: torch.Tensor, convs: list, measure) -> None:
    """The class outputs of the branch an end-to-end head does not run (its one-to-many one, or the reverse): one
    more pass with every two-branch head switched over, the BatchNorm statistics as they are."""
    if not convs:
        return
    switched = [h for h in heads if hasattr(h, "cv3") and hasattr(h, "one2one_cv3")]
    hooks = [conv.register_forward_hook(measure) for conv in convs]
    dtype, training = next(model.parameters()).dtype, model.training
    for h in switched:
        h.one2one = not h.one2one
    try:
        model.to(torch.float64).eval()(images)
    finally:
        for h in switched:
            h.one2one = not h.one2one
        for hook in hooks:
            hook.remove()
        model.to(dtype).train(training)


def _widen_spread(model: nn.Module, heads: list, images: torch.Tensor, convs: list, spread: dict) -> None:
    """An end-to-end head keeps its top-k by score: logits of spread 50 on an input unlike the calibration images
    (noise at half the size, as tests feed) saturate the sigmoid to exact ties at 1.0, whose order no two executors
    share. Each class output's spread becomes the larger of the two, for both branches."""
    def widen(conv: nn.Conv2d, _inputs, output: torch.Tensor) -> None:
        std = float((output - conv.bias.view(1, -1, 1, 1)).std())
        mean, known = spread[id(conv)]
        spread[id(conv)] = mean, max(known, std)

    switched = [h for h in heads if hasattr(h, "cv3") and hasattr(h, "one2one_cv3")]
    hooks = [conv.register_forward_hook(widen) for conv in convs]
    dtype, training = next(model.parameters()).dtype, model.training
    try:
        model.to(torch.float64).eval()
        for _ in range(2 if switched else 1):
            model(images)
            for h in switched:
                h.one2one = not h.one2one
    finally:
        for hook in hooks:
            hook.remove()
        model.to(dtype).train(training)


MAX_ATTENTION_LOGIT = 10.0


def _temper_attention(model: nn.Module, batches: list[torch.Tensor]) -> None:
    attentions = [m for m in model.modules() if isinstance(m, Attention)]
    if not attentions:
        return
    largest: dict[int, float] = {}

    def measure(attn: Attention, inputs, _output) -> None:
        x = inputs[0]
        b, _, h, w = x.shape
        qkv = attn.qkv(x).view(b, attn.num_heads, 2 * attn.key_dim + attn.head_dim, h * w)
        q, k = qkv[:, :, :attn.key_dim], qkv[:, :, attn.key_dim:2 * attn.key_dim]
        found = float(((q.transpose(-2, -1) @ k) * attn.scale).abs().max())
        largest[id(attn)] = max(found, largest.get(id(attn), 0.0))

    hooks = [m.register_forward_hook(measure) for m in attentions]
    dtype, training = next(model.parameters()).dtype, model.training
    try:
        for images in batches:
            model.to(torch.float64).eval()(images)
    finally:
        for hook in hooks:
            hook.remove()
        model.to(dtype).train(training)
    for attn in attentions:
        if largest.get(id(attn), 0.0) <= MAX_ATTENTION_LOGIT:
            continue
        factor = math.sqrt(MAX_ATTENTION_LOGIT / largest[id(attn)])
        per_head = 2 * attn.key_dim + attn.head_dim
        for head in range(attn.num_heads):
            bn = attn.qkv.bn
            span = slice(head * per_head, head * per_head + 2 * attn.key_dim)
            bn.weight[span] *= factor
            bn.bias[span] *= factor
