"""The ONNX form of `zoo::yolo_decode`: the plugin's computation as plain ONNX operators (what `export onnx` and
the ONNX backend write for the plugin layer).

The same computation as the builder's `decode="layers"` form: with y = sigmoid(t) per (anchor, cell, field), every
field is the polynomial y*y*A + y*B + G, where x, y: B = 2*stride, G = (cell - 0.5)*stride; w, h: A = 4*anchor;
obj and classes: B = 1. It reads FP32 or FP16 and computes and writes FP32, as the plugin does.
"""
from __future__ import annotations

import numpy as np
from onnx import TensorProto

from .reference import check_attrs, output_shape


def decode_onnx(g, xs, ys, *, specs, name, stride, anchors, num_outputs):
    stride, anchors, no = check_attrs(stride, anchors, num_outputs)
    (shape, _dtype), = specs
    b, cells, _ = output_shape(shape, stride=stride, anchors=anchors, num_outputs=no)
    _, _, h, w = shape
    if h < 0 or w < 0:
        raise ValueError(f"layer {name!r}: the ONNX form of yolo_decode needs static H and W, got {tuple(shape)}")
    na = anchors.size // 2
    anchors_px = anchors.reshape(na, 2)
    quadratic = np.zeros((1, na, 1, no), np.float32)
    quadratic[0, :, 0, 2:4] = 4.0 * anchors_px
    linear = np.zeros((1, 1, 1, no), np.float32)
    linear[..., 0:2], linear[..., 4:] = 2.0 * stride, 1.0
    gy, gx = np.meshgrid(np.arange(h, dtype=np.float32), np.arange(w, dtype=np.float32), indexing="ij")
    offset = np.zeros((1, 1, h * w, no), np.float32)
    offset[0, 0, :, 0], offset[0, 0, :, 1] = (gx.reshape(-1) - 0.5) * stride, (gy.reshape(-1) - 0.5) * stride

    t = g.op("Cast", [xs[0]], f"{name}/fp32", to=TensorProto.FLOAT)
    t = g.op("Reshape", [t, g.int64s([0, na, no, h * w], f"{name}/view_dims")], f"{name}/view")
    t = g.op("Transpose", [t], f"{name}/permute", perm=[0, 1, 3, 2])                # (B, na, HW, no)
    y = g.op("Sigmoid", [t], f"{name}/sigmoid")
    yy = g.op("Mul", [y, y], f"{name}/square")
    out = g.op("Add", [g.op("Mul", [yy, g.const(quadratic, f"{name}/A")], f"{name}/quadratic"),
                       g.op("Mul", [y, g.const(linear, f"{name}/B")], f"{name}/linear")], f"{name}/sum")
    out = g.op("Add", [out, g.const(offset, f"{name}/G")], f"{name}/boxes")
    g.node("Reshape", [out, g.int64s([0, cells, no], f"{name}/out_dims")], name, outputs=ys)
