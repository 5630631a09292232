"""YOLOv5 v7.0 detection on TensorRT's network API, block by block as in `model.py`, every layer named by its
module prefix (`model.4.cv1.conv`, ...), so validation matches each one to the PyTorch module's output.

The Detect head ends in one decode per level, either the `zoo::yolo_decode` plugin (the default; its Triton
kernel is embedded in the engine) or plain TensorRT layers (`decode="layers"`: an engine with no custom plugin).
Both produce the official (B, N, 5 + nc) output: xywh in input pixels, sigmoid objectness and class scores.
"""
from __future__ import annotations

import numpy as np

import layers
from plugins.yolo_decode import add_decode
from wts.weight_map import WeightMap
from zoo.trt_api import trt

from .config import YoloV5Config
from .model import scale_depth, scale_width
from .tasks import CLASSIFY_HIDDEN

DECODES = ("plugin", "layers")


class _Blocks:
    """The block helpers of one build, bound to the network, weights and width/depth multiples."""

    def __init__(self, net, weights: WeightMap, config: YoloV5Config):
        self.net, self.weights, self.config = net, weights, config

    def width(self, c: int) -> int:
        return scale_width(c, self.config.width_multiple)

    def conv(self, i: int, x, c: int, k: int, s: int = 1, p: int | None = None):
        return layers.conv_bn_act(self.net, self.weights, f"model.{i}", x, self.width(c), k, s, p)

    def c3(self, i: int, x, c: int, n: int, shortcut: bool = True):
        return layers.c3(self.net, self.weights, f"model.{i}", x, self.width(c),
                         scale_depth(n, self.config.depth_multiple), shortcut)

    def sppf(self, i: int, x, c: int):
        return layers.sppf(self.net, self.weights, f"model.{i}", x, self.width(c))

    def up(self, i: int, x):
        return layers.upsample_nearest(self.net, x, f"model.{i}")

    def cat(self, i: int, *xs):
        return layers.concat(self.net, xs, f"model.{i}")


def backbone_and_head_p5(b: _Blocks, x) -> list:
    """Layers 0-23 of yolov5{n,s,m,l,x}; returns the P3, P4, P5 outputs (layers 17, 20, 23)."""
    x = b.conv(0, x, 64, 6, 2, 2)
    x = b.c3(2, b.conv(1, x, 128, 3, 2), 128, 3)
    p3 = b.c3(4, b.conv(3, x, 256, 3, 2), 256, 6)
    p4 = b.c3(6, b.conv(5, p3, 512, 3, 2), 512, 9)
    x = b.c3(8, b.conv(7, p4, 1024, 3, 2), 1024, 3)
    h10 = b.conv(10, b.sppf(9, x, 1024), 512, 1)
    x = b.c3(13, b.cat(12, b.up(11, h10), p4), 512, 3, False)
    h14 = b.conv(14, x, 256, 1)
    out3 = b.c3(17, b.cat(16, b.up(15, h14), p3), 256, 3, False)
    out4 = b.c3(20, b.cat(19, b.conv(18, out3, 256, 3, 2), h14), 512, 3, False)
    out5 = b.c3(23, b.cat(22, b.conv(21, out4, 512, 3, 2), h10), 1024, 3, False)
    return [out3, out4, out5]


def backbone_and_head_p6(b: _Blocks, x) -> list:
    """Layers 0-32 of yolov5{n,s,m,l,x}6; returns the P3..P6 outputs (layers 23, 26, 29, 32)."""
    x = b.conv(0, x, 64, 6, 2, 2)
    x = b.c3(2, b.conv(1, x, 128, 3, 2), 128, 3)
    p3 = b.c3(4, b.conv(3, x, 256, 3, 2), 256, 6)
    p4 = b.c3(6, b.conv(5, p3, 512, 3, 2), 512, 9)
    p5 = b.c3(8, b.conv(7, p4, 768, 3, 2), 768, 3)
    x = b.c3(10, b.conv(9, p5, 1024, 3, 2), 1024, 3)
    h12 = b.conv(12, b.sppf(11, x, 1024), 768, 1)
    x = b.c3(15, b.cat(14, b.up(13, h12), p5), 768, 3, False)
    h16 = b.conv(16, x, 512, 1)
    x = b.c3(19, b.cat(18, b.up(17, h16), p4), 512, 3, False)
    h20 = b.conv(20, x, 256, 1)
    out3 = b.c3(23, b.cat(22, b.up(21, h20), p3), 256, 3, False)
    out4 = b.c3(26, b.cat(25, b.conv(24, out3, 256, 3, 2), h20), 512, 3, False)
    out5 = b.c3(29, b.cat(28, b.conv(27, out4, 512, 3, 2), h16), 768, 3, False)
    out6 = b.c3(32, b.cat(31, b.conv(30, out5, 768, 3, 2), h12), 1024, 3, False)
    return [out3, out4, out5, out6]


def decode_with_layers(net, feat, stride: int, anchors_px: np.ndarray, num_outputs: int, name: str):
    """The plugin's computation from plain layers, for engines without custom plugins.

    With y = sigmoid(t) per (anchor, cell, column), every column is one polynomial y*y*A + y*B + G:
    x, y columns: B = 2*stride, G = (cell - 0.5)*stride; w, h columns: A = 4*anchor; the rest: B = 1.
    Written this way there is no slicing of the dynamic-batch tensor, only broadcasts of small constants.
    """
    _, channels, h, w = feat.shape
    na, no = len(anchors_px), num_outputs
    t = layers.reshape(net, feat, (0, na, no, h * w), f"{name}/view")
    t = layers.transpose(net, t, (0, 1, 3, 2), f"{name}/permute")                      # (B, na, HW, no)
    y = layers.activation(net, t, "sigmoid", f"{name}/sigmoid")
    quadratic = np.zeros((1, na, 1, no), np.float32)
    quadratic[0, :, 0, 2:4] = 4.0 * anchors_px
    linear = np.zeros((1, 1, 1, no), np.float32)
    linear[..., 0:2], linear[..., 4:] = 2.0 * stride, 1.0
    gy, gx = np.meshgrid(np.arange(h, dtype=np.float32), np.arange(w, dtype=np.float32), indexing="ij")
    cells = np.stack([gx.reshape(-1), gy.reshape(-1)], axis=1)[None, None]            # (1, 1, HW, 2)
    spread = np.zeros((1, 1, 2, no), np.float32)
    spread[0, 0, 0, 0] = spread[0, 0, 1, 1] = 1.0
    offset = net.add_matrix_multiply(layers.constant(net, (cells - 0.5) * stride, f"{name}/cells"),
                                     trt.MatrixOperation.NONE,
                                     layers.constant(net, spread, f"{name}/spread"), trt.MatrixOperation.NONE)
    offset = layers.named(offset, f"{name}/offset")                                    # (1, 1, HW, no)
    dtype = layers.weight_dtype(y)
    yy = layers.multiply(net, y, y, f"{name}/square")
    out = layers.add(net, layers.multiply(net, yy, layers.constant(net, quadratic.astype(dtype), f"{name}/A"),
                                          f"{name}/quadratic"),
                     layers.multiply(net, y, layers.constant(net, linear.astype(dtype), f"{name}/B"),
                                     f"{name}/linear"), f"{name}/sum")
    out = layers.add(net, out, layers.cast(net, offset, y.dtype, f"{name}/offset_cast") if dtype != np.float32
                     else offset, f"{name}/boxes")
    return layers.reshape(net, out, (0, na * h * w, no), name)


def define_yolov5(net, weights: WeightMap, config: YoloV5Config, x, decode: str = "plugin") -> list:
    """The whole network from input `x` (B, 3, H, W), for the config's task. Returns the outputs:
    detect [(B, N, 5 + nc)]; segment [(B, N, 5 + nc + nm), protos (B, nm, H/4, W/4)]; classify [logits (B, nc)]."""
    if decode not in DECODES:
        raise ValueError(f"decode must be one of {DECODES}, got {decode!r}")
    blocks = _Blocks(net, weights, config)
    if config.task == "classify":
        return [classify_head(blocks, backbone_p5(blocks, x))]
    features = (backbone_and_head_p6 if config.p6 else backbone_and_head_p5)(blocks, x)
    detect = f"model.{config.detect_index}"
    anchors = np.asarray(config.anchors_px, np.float32)
    na, box_outputs = config.num_anchors, config.num_classes + 5
    mask_outputs = config.num_outputs - box_outputs
    decoded = []
    for i, (feat, stride) in enumerate(zip(features, config.strides)):
        name = f"{detect}/decode{i}"
        if mask_outputs:
            raw, coefficients = _split_head_conv(net, weights, f"{detect}.m.{i}", feat, na, box_outputs,
                                                 mask_outputs)
        else:
            raw = layers.conv2d(net, weights, f"{detect}.m.{i}", feat, na * box_outputs, 1)
        if decode == "plugin":
            boxes = add_decode(net, raw, stride=stride, anchors=anchors[i].reshape(-1), num_outputs=box_outputs,
                               name=name)
        else:  # box arithmetic in FP32 whatever the network's precision (the plugin computes in FP32 too)
            if raw.dtype != trt.float32:
                raw = layers.cast(net, raw, trt.float32, f"{detect}.m.{i}/fp32")
            boxes = decode_with_layers(net, raw, stride, anchors[i], box_outputs, name)
        if mask_outputs:
            boxes = layers.concat(net, [boxes, _rows(net, coefficients, na, mask_outputs, f"{name}/masks")],
                                  f"{name}/with_masks", axis=2)
        decoded.append(boxes)
    _take_anchor_keys(weights, detect)
    outputs = [layers.concat(net, decoded, detect, axis=1)]
    if config.task == "segment":
        outputs.append(proto(blocks, f"{detect}.proto", features[0], config.num_protos, config.num_masks))
    return outputs


def _split_head_conv(net, weights: WeightMap, prefix: str, feat, na: int, box_outputs: int, mask_outputs: int):
    """Segment's head conv as two convolutions of its own rows: the box/objectness/class channels, which the
    decode sigmoids, and the mask-coefficient channels, which stay raw. Channel a * no + j of the stored conv is
    field j of anchor a, so each part keeps the (anchor, field) layout the decode expects."""
    no = box_outputs + mask_outputs
    w = weights.take(f"{prefix}.weight", (na * no, feat.shape[1], 1, 1))
    b = weights.take(f"{prefix}.bias", (na * no,))
    field = np.arange(na * no) % no
    box, mask = field < box_outputs, field >= box_outputs
    return (layers.conv2d_arrays(net, weights, f"{prefix}/boxes", feat, w[box], b[box]),
            layers.conv2d_arrays(net, weights, f"{prefix}/masks", feat, w[mask], b[mask]))


def _rows(net, feat, na: int, fields: int, name: str):
    """(B, na*fields, H, W) -> (B, na*H*W, fields): the decode's row order (anchor, then y, then x)."""
    _, _, h, w = feat.shape
    t = layers.reshape(net, feat, (0, na, fields, h * w), f"{name}/view")
    t = layers.transpose(net, t, (0, 1, 3, 2), f"{name}/permute")
    t = layers.reshape(net, t, (0, na * h * w, fields), name)
    if t.dtype != trt.float32:  # the decode's output is FP32; the concat needs one type
        t = layers.cast(net, t, trt.float32, f"{name}/fp32")
    return t


def proto(b: _Blocks, prefix: str, p3, protos: int, masks: int):
    """YOLOv5's Proto: cv1 3x3 -> nearest x2 -> cv2 3x3 -> cv3 1x1 (each with BN and SiLU); named `prefix`."""
    y = layers.conv_bn_act(b.net, b.weights, f"{prefix}.cv1", p3, protos, 3)
    y = layers.upsample_nearest(b.net, y, f"{prefix}.upsample")
    y = layers.conv_bn_act(b.net, b.weights, f"{prefix}.cv2", y, protos, 3)
    return layers.rename(layers.conv_bn_act(b.net, b.weights, f"{prefix}.cv3", y, masks, 1), prefix)


def backbone_p5(b: _Blocks, x):
    """Layers 0-8 of the P5 backbone (what a YOLOv5 classification model keeps)."""
    x = b.conv(0, x, 64, 6, 2, 2)
    x = b.c3(2, b.conv(1, x, 128, 3, 2), 128, 3)
    x = b.c3(4, b.conv(3, x, 256, 3, 2), 256, 6)
    x = b.c3(6, b.conv(5, x, 512, 3, 2), 512, 9)
    return b.c3(8, b.conv(7, x, 1024, 3, 2), 1024, 3)


def classify_head(b: _Blocks, x, prefix: str = "model.9", hidden: int = CLASSIFY_HIDDEN):
    """Classify: Conv 1x1 to 1280 -> global average pool -> flatten (Dropout is the identity) -> Linear: logits."""
    return layers.classify(b.net, b.weights, prefix, x, b.config.num_classes, hidden)


def _take_anchor_keys(weights: WeightMap, detect: str) -> None:
    """Anchors went into the config; mark their keys (and tensorrtx's extra ones) as used."""
    for key in ("anchors", "anchor_grid", "strides"):
        if f"{detect}.{key}" in weights:
            weights.raw(f"{detect}.{key}")
