"""A PP-OCR stage's configuration read from its weights' value counts (BatchNorm keys may be folded away): which
stage the weights are, and the channel and kernel layout of its backbone, neck and head."""
from __future__ import annotations

import math

from wts.weight_map import WeightMap

from . import reference as ref

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


def _out_channels(weights: WeightMap, key: str, fan_in: int) -> int:
    """Output channels of a convolution from its kernel's value count (BatchNorm keys may be folded away)."""
    return weights.count(key) // fan_in


def _lcnet_config(weights: WeightMap, table) -> tuple[int, list]:
    stem = _out_channels(weights, "backbone.conv1.conv.weight", 3 * 3 * 3)
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
        cin = stages[-1][-1][1]
        return {"stage": "rec", "variant": variant, "stem": stem, "stages": stages,
                "dims": _out_channels(weights, "neck.conv2.conv.weight", cin // 8), "hidden": weights.count("neck.blocks.0.fc1.bias"),
                "depth": depth, "classes": weights.count("fc.bias")}
    stem = _out_channels(weights, "conv1.conv.weight", 3 * 3 * 3)
    blocks, cin = [], stem
    for i in range(len(ref.MOBILENET_CLS)):
        expand = _out_channels(weights, f"blocks.{i}.expand_conv.conv.weight", cin)
        cout = _out_channels(weights, f"blocks.{i}.linear_conv.conv.weight", expand)
        blocks.append((cin, expand, cout, _kernel(weights, f"blocks.{i}.bottleneck_conv.conv.weight", expand)))
        cin = cout
    return {"stage": "cls", "variant": variant, "stem": stem, "blocks": blocks,
            "last": _out_channels(weights, "conv2.conv.weight", cin), "classes": weights.count("fc.bias")}

