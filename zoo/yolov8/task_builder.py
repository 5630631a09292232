"""The YOLOv8 / YOLO11 heads beyond detection on TensorRT's network API, mirroring zoo/yolov8/tasks.py.

Segment, pose and oriented boxes reuse the detector's backbone, neck and head branches (zoo.yolov8.builder) and add
`cv4` per level (the same Conv 3x3, Conv 3x3, Conv2d 1x1 as the box branch):
- segment: the box decode as for detection (plugin or layers), the mask coefficients appended raw, and `proto`
  with its transposed convolution (`add_deconvolution_nd`). Outputs `model.<d>` and `model.<d>.proto`.
- pose: the box decode as for detection; the keypoints decoded by layers, for any (K, D): one polynomial per
  channel, raw * A + sigmoid(raw) * V + G, with A = 2 * stride on x and y channels, V = 1 on visibility channels,
  G = cell * stride (constants per channel and anchor; no slicing of the dynamic batch).
- oriented boxes: the DFL distances (zoo.yolov8.builder.dfl_distances), the angle (sigmoid - 0.25) * pi, and the
  rotation of the box's centre offset with COS/SIN unary layers; always plain layers (the dfl_decode plugin
  computes axis-aligned boxes).
- classify: the backbone alone, then YOLO's Classify head with its softmax.
Every decode computes in FP32, whatever the network's precision.
"""
from __future__ import annotations

import math

import numpy as np

import layers
from wts.weight_map import WeightMap
from zoo.trt_api import trt

from .builder import (DECODES, Blocks, anchor_grid, backbone_and_neck, box_branch, decode_with_layers,
                      decode_with_plugin, define_yolov8, dfl_distances, head_branches)
from .task_config import TaskConfig
from .tasks import CLASSIFY_HIDDEN


def define_task(net, weights: WeightMap, config: TaskConfig, x, decode: str = "plugin") -> list:
    """The network of `config.task` from input x (B, 3, H, W); returns its output tensors."""
    if decode not in DECODES:
        raise ValueError(f"decode must be one of {DECODES}, got {decode!r}")
    if config.task == "detect":
        return [define_yolov8(net, weights, config, x, decode)]
    if config.task == "classify":
        return [classify(net, weights, config, x)]
    features = backbone_and_neck(net, weights, config, x)
    prefix = f"model.{config.detect_index}"
    raw = head_branches(net, weights, config, prefix, features)
    outputs = {"segment": config.num_masks, "pose": math.prod(config.kpt_shape or (0,)), "obb": 1}[config.task]
    hidden = max(features[0].shape[1] // 4, outputs)
    extra = _levels(net, [box_branch(net, weights, f"{prefix}.cv4.{i}", f, hidden, outputs)
                          for i, f in enumerate(features)], f"{prefix}/cv4")
    if config.task == "obb":
        return [rotated_decode(net, weights, prefix, raw, extra, config.strides, config.reg_max)]
    boxes = (decode_with_plugin if decode == "plugin" else decode_with_layers)(net, weights, prefix, raw,
                                                                              config.strides, config.reg_max)
    layers.rename(boxes, f"{prefix}/boxes")
    if config.task == "segment":
        out = layers.concat(net, [boxes, extra], prefix, axis=1)
        return [out, proto(net, weights, f"{prefix}.proto", features[0], config.num_protos, config.num_masks)]
    sizes = [tuple(f.shape[2:]) for f in features]
    keypoints = decode_keypoints(net, extra, config.kpt_shape, sizes, config.strides, f"{prefix}/keypoints")
    return [layers.concat(net, [boxes, keypoints], prefix, axis=1)]


def _levels(net, per_level: list, name: str):
    """Per-level (B, C, H, W) -> (B, C, A) FP32, levels concatenated (P3 first)."""
    flat = []
    for i, t in enumerate(per_level):
        if t.dtype != trt.float32:
            t = layers.cast(net, t, trt.float32, f"{t.name}/fp32")
        flat.append(layers.reshape(net, t, (0, t.shape[1], t.shape[2] * t.shape[3]), f"{name}/flat{i}"))
    return layers.concat(net, flat, name, axis=2)


def _constant(net, array: np.ndarray, name: str):
    return layers.constant(net, np.ascontiguousarray(array, np.float32), name)


def decode_keypoints(net, raw, kpt_shape, sizes, strides, name: str):
    """(B, K*D, A) raw -> keypoints in input pixels: x = (raw * 2 + cell_x) * stride, y likewise, v = sigmoid."""
    k, d = kpt_shape
    anchors, per_anchor = anchor_grid(sizes, strides)                 # (2, A) cell centres, (A,) strides
    cells = (anchors - 0.5) * per_anchor                               # cell corner * stride, (2, A)
    gain = np.zeros((1, k * d, anchors.shape[1]), np.float32)
    offset = np.zeros_like(gain)
    for axis in (0, 1):
        gain[0, axis::d] = 2 * per_anchor
        offset[0, axis::d] = cells[axis]
    visible = np.zeros((1, k * d, 1), np.float32)
    if d == 3:
        visible[0, 2::3] = 1.0
    linear = layers.multiply(net, raw, _constant(net, gain, f"{name}/gain"), f"{name}/linear")
    out = layers.add(net, linear, _constant(net, offset, f"{name}/cells"), f"{name}/xy")
    if d == 3:
        sig = layers.activation(net, raw, "sigmoid", f"{name}/sigmoid")
        out = layers.add(net, out, layers.multiply(net, sig, _constant(net, visible, f"{name}/visibility_mask"),
                                                   f"{name}/visibility"), f"{name}/with_visibility")
    return layers.rename(out, name)


def _gather(net, x, indices, name: str):
    return layers.named(net.add_gather(x, layers.constant(net, np.asarray(indices, np.int32), f"{name}/indices"), 1),
                        name)


def rotated_decode(net, weights: WeightMap, prefix: str, raw: list, angle_logits, strides, reg_max: int):
    """(B, 4 + nc + 1, A): rotated xywh in input pixels, sigmoid scores, angle (radians)."""
    distances, classes, sizes = dfl_distances(net, weights, prefix, raw, reg_max)
    angle = layers.activation(net, angle_logits, "sigmoid", f"{prefix}/angle_sigmoid")
    angle = layers.add(net, angle, _constant(net, np.full((1, 1, 1), -0.25), f"{prefix}/quarter"),
                       f"{prefix}/angle_centred")
    angle = layers.multiply(net, angle, _constant(net, np.full((1, 1, 1), math.pi), f"{prefix}/pi"),
                            f"{prefix}/angle")
    cos = layers.named(net.add_unary(angle, trt.UnaryOperation.COS), f"{prefix}/cos")
    sin = layers.named(net.add_unary(angle, trt.UnaryOperation.SIN), f"{prefix}/sin")
    swapped = _gather(net, distances, [2, 3, 0, 1], f"{prefix}/swapped")           # (r, b, l, t)
    half = layers.multiply(net, layers.named(net.add_elementwise(swapped, distances, trt.ElementWiseOperation.SUB),
                                             f"{prefix}/offset2"),
                           _constant(net, np.full((1, 1, 1), 0.5), f"{prefix}/half"), f"{prefix}/offset")
    xf, yf = _gather(net, half, [0], f"{prefix}/xf"), _gather(net, half, [1], f"{prefix}/yf")
    x = layers.named(net.add_elementwise(layers.multiply(net, xf, cos, f"{prefix}/xf_cos"),
                                         layers.multiply(net, yf, sin, f"{prefix}/yf_sin"),
                                         trt.ElementWiseOperation.SUB), f"{prefix}/x")
    y = layers.add(net, layers.multiply(net, xf, sin, f"{prefix}/xf_sin"),
                   layers.multiply(net, yf, cos, f"{prefix}/yf_cos"), f"{prefix}/y")
    anchors, per_anchor = anchor_grid(sizes, strides)
    xy = layers.add(net, layers.concat(net, [x, y], f"{prefix}/xy_offset", axis=1),
                    _constant(net, anchors[None], f"{prefix}/anchors"), f"{prefix}/xy_grid")
    wh = _gather(net, layers.add(net, swapped, distances, f"{prefix}/sides"), [0, 1], f"{prefix}/wh_grid")
    stride = _constant(net, per_anchor.reshape(1, 1, -1), f"{prefix}/strides")
    boxes = layers.multiply(net, layers.concat(net, [xy, wh], f"{prefix}/xywh_grid", axis=1), stride,
                            f"{prefix}/xywh")
    scores = layers.activation(net, layers.concat(net, classes, f"{prefix}/cls", axis=2), "sigmoid",
                               f"{prefix}/scores")
    return layers.concat(net, [boxes, scores, angle], prefix, axis=1)


def proto(net, weights: WeightMap, prefix: str, p3, protos: int, masks: int):
    """Proto: cv1 3x3 -> ConvTranspose2d(2, stride 2) -> cv2 3x3 -> cv3 1x1; named `prefix`."""
    y = layers.conv_bn_act(net, weights, f"{prefix}.cv1", p3, protos, 3)
    y = layers.conv_transpose2d(net, weights, f"{prefix}.upsample", y, protos, 2, 2)
    y = layers.conv_bn_act(net, weights, f"{prefix}.cv2", y, protos, 3)
    return layers.rename(layers.conv_bn_act(net, weights, f"{prefix}.cv3", y, masks, 1), prefix)


def classify(net, weights: WeightMap, config: TaskConfig, x):
    """YOLOv8-cls: layers 0-8, Classify at 9; YOLO11-cls: layers 0-8, C2PSA at 9, Classify at 10."""
    b = Blocks(net, weights, config)
    if config.family == "yolov8":
        x = b.c2f(2, b.conv(1, b.conv(0, x, 64), 128), 128, 3, True)
        x = b.c2f(4, b.conv(3, x, 256), 256, 6, True)
        x = b.c2f(6, b.conv(5, x, 512), 512, 6, True)
        x = b.c2f(8, b.conv(7, x, 1024), 1024, 3, True)
    else:
        x = b.c3k2(2, b.conv(1, b.conv(0, x, 64), 128), 256, expansion=0.25)
        x = b.c3k2(4, b.conv(3, x, 256), 512, expansion=0.25)
        x = b.c3k2(6, b.conv(5, x, 512), 512)
        x = b.c2psa(9, b.c3k2(8, b.conv(7, x, 1024), 1024))
    return layers.classify(net, weights, f"model.{config.head_index}", x, config.num_classes, CLASSIFY_HIDDEN,
                           softmax=True)
