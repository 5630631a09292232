"""The ONNX form of `zoo::dfl_decode`: the plugin's computation as plain ONNX operators (what `export onnx` and the
ONNX backend write for the plugin layer), the same formula as `reference.decode_reference`:

    d = sum_k k * softmax_k(box logits)        per side (l, t, r, b), over the reg_max bins
    x1y1 = anchor - (l, t), x2y2 = anchor + (r, b), anchor = (x + 0.5, y + 0.5)
    out = [(x1y1 + x2y2) / 2 * stride, (x2y2 - x1y1) * stride, sigmoid(class logits)]

It reads FP32 or FP16 and computes and writes FP32, as the plugin does; H and W must be static (the anchors are
constants).
"""
from __future__ import annotations

import numpy as np
from onnx import TensorProto

from .reference import check_attrs, output_shape


def decode_onnx(g, xs, ys, *, specs, name, stride, reg_max):
    stride, reg_max = check_attrs(stride, reg_max)
    (box_shape, _), (cls_shape, _) = specs
    _, channels, cells = output_shape(box_shape, cls_shape, stride=stride, reg_max=reg_max)
    if cells < 0:
        raise ValueError(f"layer {name!r}: the ONNX form of dfl_decode needs static H and W, got {tuple(box_shape)}")
    h, w = int(box_shape[2]), int(box_shape[3])
    gy, gx = np.meshgrid(np.arange(h, dtype=np.float32) + 0.5, np.arange(w, dtype=np.float32) + 0.5, indexing="ij")
    anchor = np.stack((gx.reshape(-1), gy.reshape(-1)))[None]                          # (1, 2, HW)
    bins = np.arange(reg_max, dtype=np.float32).reshape(1, 1, reg_max, 1)

    def fp32(x, what):
        return g.op("Cast", [x], f"{name}/{what}_fp32", to=TensorProto.FLOAT)

    def half(x, start, what):  # channels start..start+2 of (B, 4, HW)
        return g.op("Slice", [x, g.int64s([start], f"{name}/{what}_start"), g.int64s([start + 2], f"{name}/{what}_end"),
                              g.int64s([1], f"{name}/{what}_axis")], f"{name}/{what}")

    logits = g.op("Reshape", [fp32(xs[0], "box"), g.int64s([0, 4, reg_max, cells], f"{name}/bins_dims")],
                  f"{name}/bins")
    probs = g.op("Softmax", [logits], f"{name}/softmax", axis=2)
    dist = g.op("ReduceSum", [g.op("Mul", [probs, g.const(bins, f"{name}/bin_values")], f"{name}/weighted"),
                              g.int64s([2], f"{name}/sum_axis")], f"{name}/dfl", keepdims=0)   # (B, 4, HW)
    anchors = g.const(anchor, f"{name}/anchors")
    x1y1 = g.op("Sub", [anchors, half(dist, 0, "lt")], f"{name}/x1y1")
    x2y2 = g.op("Add", [anchors, half(dist, 2, "rb")], f"{name}/x2y2")
    stride_c = g.const(np.array(stride, np.float32), f"{name}/stride")
    centre = g.op("Mul", [g.op("Add", [x1y1, x2y2], f"{name}/corner_sum"),
                          g.const(np.array(stride / 2, np.float32), f"{name}/half_stride")], f"{name}/cxcy")
    size = g.op("Mul", [g.op("Sub", [x2y2, x1y1], f"{name}/extent"), stride_c], f"{name}/wh")
    scores = g.op("Sigmoid", [g.op("Reshape", [fp32(xs[1], "cls"), g.int64s([0, channels - 4, cells],
                                                                              f"{name}/cls_dims")], f"{name}/cls")],
                  f"{name}/scores")
    g.node("Concat", [centre, size, scores], name, outputs=ys, axis=1)
