"""YOLOv8 and YOLO11 detection on TensorRT's network API, block by block as in `model.py`, every layer named by its
module prefix (`model.2.m.0.cv1.conv`, `model.22.cv3.1.2`, ...) so validation matches it to the PyTorch module.

The head is three parts, so that the other tasks' heads (segment, pose, oriented boxes) reuse the first two:
`head_branches` (per level: box logits from cv2, class logits from cv3), `decode` (all levels: DFL expectation,
anchor points, distance-to-box, times stride, sigmoid scores) either as the `zoo::dfl_decode` plugin (default; its
Triton kernel is embedded in the engine) or as plain layers (`decode="layers"`), and the official (B, 4 + nc, A)
output. The decode computes in FP32 whatever the network's precision.
"""
from __future__ import annotations

import numpy as np

import layers
from plugins.dfl_decode import add_dfl_decode
from wts.weight_map import WeightMap
from zoo.trt_api import trt

from .config import YoloV8Config
from .model import yolo11_c3k

DECODES = ("plugin", "layers")


class Blocks:
    """The block helpers of one build, bound to the network, the weights and the scaling."""

    def __init__(self, net, weights: WeightMap, config: YoloV8Config):
        self.net, self.weights, self.config = net, weights, config
        self.scaling = config.scaling
        c3k = config.c3k if config.c3k is not None else yolo11_c3k(config.depth, config.width, config.max_channels)
        self.c3k = dict(c3k)

    def w(self, c: int) -> int:
        return self.scaling.channels(c)

    def conv(self, i: int, x, c: int, k: int = 3, s: int = 2):
        return layers.conv_bn_act(self.net, self.weights, f"model.{i}", x, self.w(c), k, s)

    def c2f(self, i: int, x, c: int, n: int, shortcut: bool = False):
        return layers.c2f(self.net, self.weights, f"model.{i}", x, self.w(c), self.scaling.repeats(n), shortcut)

    def c3k2(self, i: int, x, c: int, n: int = 2, expansion: float = 0.5):
        return layers.c3k2(self.net, self.weights, f"model.{i}", x, self.w(c), self.scaling.repeats(n), self.c3k[i],
                           expansion)

    def sppf(self, i: int, x, c: int):
        return layers.sppf(self.net, self.weights, f"model.{i}", x, self.w(c), 5,
                           "silu" if self.config.sppf_act else None)

    def c2psa(self, i: int, x):
        n = self.config.c2psa_repeats if self.config.c2psa_repeats is not None else self.scaling.repeats(2)
        return layers.c2psa(self.net, self.weights, f"model.{i}", x, n)

    def up(self, i: int, x):
        return layers.upsample_nearest(self.net, x, f"model.{i}")

    def cat(self, i: int, *xs):
        return layers.concat(self.net, xs, f"model.{i}")


def backbone_and_neck_v8(b: Blocks, x) -> list:
    """Layers 0-21 of YOLOv8; returns the P3, P4, P5 outputs (layers 15, 18, 21)."""
    x = b.c2f(2, b.conv(1, b.conv(0, x, 64), 128), 128, 3, True)
    p3 = b.c2f(4, b.conv(3, x, 256), 256, 6, True)
    p4 = b.c2f(6, b.conv(5, p3, 512), 512, 6, True)
    p5 = b.sppf(9, b.c2f(8, b.conv(7, p4, 1024), 1024, 3, True), 1024)
    h12 = b.c2f(12, b.cat(11, b.up(10, p5), p4), 512, 3)
    out3 = b.c2f(15, b.cat(14, b.up(13, h12), p3), 256, 3)
    out4 = b.c2f(18, b.cat(17, b.conv(16, out3, 256), h12), 512, 3)
    out5 = b.c2f(21, b.cat(20, b.conv(19, out4, 512), p5), 1024, 3)
    return [out3, out4, out5]


def backbone_and_neck_11(b: Blocks, x) -> list:
    """Layers 0-22 of YOLO11; returns the P3, P4, P5 outputs (layers 16, 19, 22)."""
    x = b.c3k2(2, b.conv(1, b.conv(0, x, 64), 128), 256, expansion=0.25)
    p3 = b.c3k2(4, b.conv(3, x, 256), 512, expansion=0.25)
    p4 = b.c3k2(6, b.conv(5, p3, 512), 512)
    p5 = b.c2psa(10, b.sppf(9, b.c3k2(8, b.conv(7, p4, 1024), 1024), 1024))
    h13 = b.c3k2(13, b.cat(12, b.up(11, p5), p4), 512)
    out3 = b.c3k2(16, b.cat(15, b.up(14, h13), p3), 256)
    out4 = b.c3k2(19, b.cat(18, b.conv(17, out3, 256), h13), 512)
    out5 = b.c3k2(22, b.cat(21, b.conv(20, out4, 512), p5), 1024)
    return [out3, out4, out5]


def backbone_and_neck(net, weights: WeightMap, config: YoloV8Config, x) -> list:
    blocks = Blocks(net, weights, config)
    return (backbone_and_neck_v8 if config.family == "yolov8" else backbone_and_neck_11)(blocks, x)


# ----------------------------------------------------------------------------------------------------- head


def head_channels(config: YoloV8Config, first_input: int) -> tuple[int, int]:
    """(box branch width c2, class branch width c3) from the P3 input's channels, as the Detect head computes them."""
    return max(16, first_input // 4, config.reg_max * 4), max(first_input, min(config.num_classes, 100))


def box_branch(net, weights: WeightMap, prefix: str, x, hidden: int, outputs: int):
    """Conv 3x3, Conv 3x3, Conv2d 1x1 with bias (`<prefix>.0`, `.1`, `.2`): cv2, and the other tasks' cv4."""
    y = layers.conv_bn_act(net, weights, f"{prefix}.0", x, hidden, 3)
    y = layers.conv_bn_act(net, weights, f"{prefix}.1", y, hidden, 3)
    return layers.conv2d(net, weights, f"{prefix}.2", y, outputs, 1)


def class_branch(net, weights: WeightMap, prefix: str, x, hidden: int, outputs: int, depthwise: bool):
    """cv3: YOLOv8's plain form (as box_branch) or YOLO11's [DWConv 3x3, Conv 1x1] x 2, then Conv2d 1x1."""
    if not depthwise:
        return box_branch(net, weights, prefix, x, hidden, outputs)
    y = layers.dwconv(net, weights, f"{prefix}.0.0", x, x.shape[1], 3)
    y = layers.conv_bn_act(net, weights, f"{prefix}.0.1", y, hidden, 1)
    y = layers.dwconv(net, weights, f"{prefix}.1.0", y, hidden, 3)
    y = layers.conv_bn_act(net, weights, f"{prefix}.1.1", y, hidden, 1)
    return layers.conv2d(net, weights, f"{prefix}.2", y, outputs, 1)


def head_branches(net, weights: WeightMap, config: YoloV8Config, prefix: str, features: list) -> list[tuple]:
    """Per level (box logits (B, 4*reg_max, H, W), class logits (B, nc, H, W)), as Detect.branches."""
    c2, c3 = head_channels(config, features[0].shape[1])
    return [(box_branch(net, weights, f"{prefix}.cv2.{i}", x, c2, 4 * config.reg_max),
             class_branch(net, weights, f"{prefix}.cv3.{i}", x, c3, config.num_classes, config.depthwise_head))
            for i, x in enumerate(features)]


def _fp32(net, x):
    return x if x.dtype == trt.float32 else layers.cast(net, x, trt.float32, f"{x.name}/fp32")


def dfl_bins(weights: WeightMap, prefix: str, reg_max: int) -> np.ndarray:
    """The DFL's fixed bin values (`<prefix>.dfl.conv.weight`, 0..reg_max-1 in every released model)."""
    if reg_max == 1:
        return np.zeros(1, np.float32)
    return weights.take(f"{prefix}.dfl.conv.weight", (1, reg_max, 1, 1)).reshape(reg_max)


def dfl_distances(net, weights: WeightMap, prefix: str, raw: list, reg_max: int):
    """The first half of the layers decode, shared with the rotated-box head: (distances (B, 4, A) FP32 in grid
    units, flattened class logits per level (B, nc, HW) FP32, level sizes). Levels are flattened and concatenated
    (P3, P4, P5); DFL is a softmax over the bins times the bin values, summed (`<prefix>.dfl`)."""
    boxes = [layers.reshape(net, _fp32(net, box), (0, 4 * reg_max, box.shape[2] * box.shape[3]),
                             f"{prefix}/box{i}")
             for i, (box, _) in enumerate(raw)]
    classes = [layers.reshape(net, _fp32(net, cls), (0, cls.shape[1], cls.shape[2] * cls.shape[3]),
                               f"{prefix}/cls{i}")
               for i, (_, cls) in enumerate(raw)]
    sizes = [tuple(box.shape[2:]) for box, _ in raw]
    num_anchors = sum(h * w for h, w in sizes)
    box = layers.concat(net, boxes, f"{prefix}/box", axis=2)
    bins = dfl_bins(weights, prefix, reg_max)
    if reg_max > 1:
        logits = layers.reshape(net, box, (0, 4, reg_max, num_anchors), f"{prefix}/bins")
        p = layers.softmax(net, logits, f"{prefix}/bins_softmax", axis=2)
        weighted = layers.multiply(net, p, layers.constant(net, bins.reshape(1, 1, reg_max, 1), f"{prefix}/dfl_bins"),
                                   f"{prefix}/bins_weighted")
        distances = layers.named(net.add_reduce(weighted, trt.ReduceOperation.SUM, 1 << 2, False), f"{prefix}.dfl")
    else:
        distances = box
    return distances, classes, sizes


def decode_with_layers(net, weights: WeightMap, prefix: str, raw: list, strides, reg_max: int):
    """(B, 4 + nc, A) from per-level logits with plain TensorRT layers (no plugin), in FP32.

    After `dfl_distances`: distances (l, t, r, b) to centre/size without slicing the dynamic batch: a constant
    gather swaps the pairs to (r, b, l, t), and cxcywh = swapped * (.5, .5, 1, 1) + d * (-.5, -.5, 1, 1) +
    (anchor x, anchor y, 0, 0), times each anchor's stride.
    """
    distances, classes, sizes = dfl_distances(net, weights, prefix, raw, reg_max)
    num_anchors = sum(h * w for h, w in sizes)
    swapped = layers.named(net.add_gather(distances, layers.constant(net, np.array([2, 3, 0, 1], np.int32),
                                                                     f"{prefix}/swap_indices"), 1),
                           f"{prefix}/swapped")
    anchors, per_anchor = anchor_grid(sizes, strides)
    offset = np.zeros((1, 4, num_anchors), np.float32)
    offset[0, :2] = anchors
    xywh = layers.add(net,
                      layers.add(net, layers.multiply(net, swapped, _const(net, [0.5, 0.5, 1, 1], f"{prefix}/P"),
                                                      f"{prefix}/swapped_scaled"),
                                 layers.multiply(net, distances, _const(net, [-0.5, -0.5, 1, 1], f"{prefix}/Q"),
                                                 f"{prefix}/distances_scaled"), f"{prefix}/sum"),
                      layers.constant(net, offset, f"{prefix}/anchors"), f"{prefix}/xywh_grid")
    xywh = layers.multiply(net, xywh, layers.constant(net, per_anchor.reshape(1, 1, -1), f"{prefix}/strides"),
                           f"{prefix}/xywh")
    scores = layers.activation(net, layers.concat(net, classes, f"{prefix}/cls", axis=2), "sigmoid",
                               f"{prefix}/scores")
    return layers.concat(net, [xywh, scores], prefix, axis=1)


def _const(net, values, name: str):
    return layers.constant(net, np.asarray(values, np.float32).reshape(1, 4, 1), name)


def anchor_grid(sizes, strides) -> tuple[np.ndarray, np.ndarray]:
    """((2, A) cell centres in grid units, (A,) stride of each anchor), levels in order, rows then columns."""
    points, per_anchor = [], []
    for (h, w), s in zip(sizes, strides):
        gy, gx = np.meshgrid(np.arange(h, dtype=np.float32) + 0.5, np.arange(w, dtype=np.float32) + 0.5,
                             indexing="ij")
        points.append(np.stack((gx.reshape(-1), gy.reshape(-1))))
        per_anchor.append(np.full(h * w, s, np.float32))
    return np.concatenate(points, 1), np.concatenate(per_anchor)


def decode_with_plugin(net, weights: WeightMap, prefix: str, raw: list, strides, reg_max: int):
    """(B, 4 + nc, A): one `zoo::dfl_decode` op per level (FP32 or FP16 in, FP32 out), concatenated."""
    bins = dfl_bins(weights, prefix, reg_max)
    if not np.array_equal(bins, np.arange(reg_max, dtype=np.float32)):
        raise ValueError(f"{weights.source}: {prefix}.dfl.conv.weight is not 0..{reg_max - 1}; the plugin assumes "
                         "those bins: build with --decode layers")
    levels = [add_dfl_decode(net, box, cls, stride=s, reg_max=reg_max, name=f"{prefix}/decode{i}")
              for i, ((box, cls), s) in enumerate(zip(raw, strides))]
    return layers.concat(net, levels, prefix, axis=2)


def define_yolov8(net, weights: WeightMap, config: YoloV8Config, x, decode: str = "plugin"):
    """The whole detector from input x (B, 3, H, W); returns the (B, 4 + nc, A) output named `model.<head>`."""
    if decode not in DECODES:
        raise ValueError(f"decode must be one of {DECODES}, got {decode!r}")
    features = backbone_and_neck(net, weights, config, x)
    prefix = f"model.{config.detect_index}"
    raw = head_branches(net, weights, config, prefix, features)
    decoder = decode_with_plugin if decode == "plugin" else decode_with_layers
    return decoder(net, weights, prefix, raw, config.strides, config.reg_max)
