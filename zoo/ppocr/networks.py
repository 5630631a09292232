"""PP-OCR's three networks on an INetworkDefinition, block by block as the modules of reference.py, from the
structured weights (onnx_import) and the configuration read from their shapes.

Inputs: det [N, 3, H, W] with H and W multiples of 32 (dynamic), rec [N, 3, 48, W] (W dynamic), cls [N, 3, 48, 192].
Outputs: det the text probability map [N, 1, H, W]; rec character probabilities [N, W / 8, classes]; cls the
probabilities of 0 and 180 degrees [N, 2].
"""
from __future__ import annotations

import layers
from layers import core, mobile, ocr

from . import reference as ref

OUTPUTS = {"det": "probability", "rec": "characters", "cls": "direction"}
INPUT_SHAPES = {"det": (3, -1, -1), "rec": (3, 48, -1), "cls": (3, 48, 192)}


def _conv_bn(net, weights, prefix: str, x, cout: int, kernel, stride=1, padding=0, groups: int = 1):
    y = core.conv_bn(net, weights, f"{prefix}.conv", f"{prefix}.bn", x, cout, kernel, stride, padding, groups,
                     eps=ref.BN_EPS)
    return core.rename(y, prefix)


def lcnet(net, weights, x, config: dict, table, prefix: str = "backbone"):
    """PP-LCNetV3; the outputs of stages 3..6."""
    x = _conv_bn(net, weights, f"{prefix}.conv1", x, config["stem"], 3, 2, 1)
    outputs = []
    for stage, (blocks, layout) in enumerate(zip(config["stages"], table), start=2):
        for i, ((_, cout, kernel), (stride, se)) in enumerate(zip(blocks, layout)):
            x = ocr.lcnet_block(net, weights, f"{prefix}.blocks{stage}.{i}", x, cout, kernel, stride, se,
                                ref.SE_SLOPE_LCNET)
        core.rename(x, f"{prefix}.blocks{stage}")
        if stage > 2:
            outputs.append(x)
    return outputs


def define_det(net, weights, config: dict, x) -> list:
    stages = lcnet(net, weights, x, config, ref.LCNET_DET)
    c2, c3, c4, c5 = (core.conv2d(net, weights, f"backbone.layer_list.{i}", s, cout, 1)
                      for i, (s, (_, cout)) in enumerate(zip(stages, config["det_outputs"])))
    fpn, slope = config["fpn"], ref.SE_SLOPE_NECK
    in5, in4, in3, in2 = (ocr.rse_layer(net, weights, f"neck.ins_conv.{i}", c, fpn, 1, slope)
                          for i, c in ((3, c5), (2, c4), (1, c3), (0, c2)))
    out4 = core.add(net, in4, core.upsample_nearest(net, in5, "neck/up5"), "neck/out4")
    out3 = core.add(net, in3, core.upsample_nearest(net, out4, "neck/up4"), "neck/out3")
    out2 = core.add(net, in2, core.upsample_nearest(net, out3, "neck/up3"), "neck/out2")
    p5, p4, p3, p2 = (ocr.rse_layer(net, weights, f"neck.inp_conv.{i}", o, fpn // 4, 3, slope)
                      for i, o in ((3, in5), (2, out4), (1, out3), (0, out2)))
    fused = core.concat(net, [core.upsample_nearest(net, p5, "neck/p5_up", 8),
                              core.upsample_nearest(net, p4, "neck/p4_up", 4),
                              core.upsample_nearest(net, p3, "neck/p3_up", 2), p2], "neck")
    mid = fpn // 4
    y = core.activation(net, _conv_bn(net, weights, "head.conv1", fused, mid, 3, 1, 1), "relu", "head/relu1")
    y = core.conv_transpose2d(net, weights, "head.conv2", y, mid, 2, 2)
    y = core.activation(net, core.batch_norm(net, weights, "head.bn2", y, ref.BN_EPS), "relu", "head/relu2")
    y = core.conv_transpose2d(net, weights, "head.conv3", y, 1, 2, 2)
    return [core.activation(net, y, "sigmoid", OUTPUTS["det"])]


def _conv_bn_swish(net, weights, prefix: str, x, cout: int, kernel, padding=0):
    y = core.conv_bn(net, weights, f"{prefix}.conv", f"{prefix}.bn", x, cout, kernel, 1, padding, eps=ref.BN_EPS)
    return core.activation(net, y, "silu", prefix)


def define_rec(net, weights, config: dict, x) -> list:
    features = lcnet(net, weights, x, config, ref.LCNET_REC)[-1]
    pooled = core.avg_pool(net, features, "backbone/pool", (3, 2))
    cin, dims = features.shape[1], config["dims"]
    z = _conv_bn_swish(net, weights, "neck.conv1", pooled, cin // 8, (1, 3), (0, 1))
    z = _conv_bn_swish(net, weights, "neck.conv2", z, dims, 1)
    tokens = ocr.tokens_from_row(net, z, "neck/tokens")
    for i in range(config["depth"]):
        tokens = ocr.svtr_block(net, weights, f"neck.blocks.{i}", tokens, config["hidden"], ref.SVTR_HEADS)
    tokens = layers.layer_norm(net, weights, "neck.norm", tokens, 1e-6)
    z = ocr.row_from_tokens(net, tokens, 1, "neck/row")
    z = _conv_bn_swish(net, weights, "neck.conv3", z, cin, 1)
    z = core.concat(net, [pooled, z], "neck/concat")
    z = _conv_bn_swish(net, weights, "neck.conv4", z, cin // 8, (1, 3), (0, 1))
    z = core.rename(_conv_bn_swish(net, weights, "neck.conv1x1", z, dims, 1), "neck")
    columns = ocr.tokens_from_row(net, z, "head/columns")
    logits = core.linear(net, weights, "fc", columns, config["classes"])
    return [core.softmax(net, logits, OUTPUTS["rec"], axis=2)]


def define_cls(net, weights, config: dict, x) -> list:
    x = mobile.hardswish(net, _conv_bn(net, weights, "conv1", x, config["stem"], 3, 2, 1), "conv1/hardswish")
    for i, ((cin, expand, cout, kernel), (act, stride, se)) in enumerate(zip(config["blocks"], ref.MOBILENET_CLS)):
        prefix = f"blocks.{i}"
        y = mobile.act(net, _conv_bn(net, weights, f"{prefix}.expand_conv", x, expand, 1), act,
                       f"{prefix}/expand_act")
        y = _conv_bn(net, weights, f"{prefix}.bottleneck_conv", y, expand, kernel, stride, kernel // 2, expand)
        y = mobile.act(net, y, act, f"{prefix}/bottleneck_act")
        if se:
            y = ocr.squeeze_excite(net, weights, f"{prefix}.mid_se", y, ref.SE_SLOPE_NECK)
        y = _conv_bn(net, weights, f"{prefix}.linear_conv", y, cout, 1)
        x = core.add(net, x, y, prefix) if cin == cout and tuple(stride) == (1, 1) else core.rename(y, prefix)
    core.rename(x, "blocks")
    x = mobile.hardswish(net, _conv_bn(net, weights, "conv2", x, config["last"], 1), "conv2/hardswish")
    x = core.global_avg_pool(net, core.max_pool(net, x, "pool/max", 2, 2), "pool/mean")
    logits = core.linear(net, weights, "fc", core.flatten(net, x, "pool/flatten"), config["classes"])
    return [core.softmax(net, logits, OUTPUTS["cls"], axis=1)]


DEFINE = {"det": define_det, "rec": define_rec, "cls": define_cls}
