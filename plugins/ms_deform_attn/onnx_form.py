"""The ONNX form of `zoo::ms_deform_attn`: the plugin's computation as plain ONNX operators (opset 16+ GridSample,
one per level), what `export onnx` and the ONNX backend write for the plugin layer. The same steps as the plain-layer
form (layers_form.py), in ONNX's words:

    grid = 2 * locations - 1;  per level: Slice the level's rows of value, Transpose/Reshape to (B*M, D, H, W),
    Gather the level's grid (B, Q, M, P, 2) -> (B*M, Q, P, 2), GridSample (bilinear, zeros, align_corners 0);
    Concat the levels' samples (B*M, D, Q, L*P), Mul by the weights (B*M, 1, Q, L*P), ReduceSum -> (B, Q, M*D).

FP16 inputs are cast to FP32 first and the output back (the plugin computes in FP32 and rounds once); ONNX
Runtime's GridSample reads FP32 only. Only the batch may be dynamic.
"""
from __future__ import annotations

import numpy as np
from onnx import TensorProto

from zoo.trt_api import trt

from .reference import level_shapes, output_shape


def ms_deform_attn_onnx(g, xs, ys, *, specs, name, spatial_shapes):
    levels = level_shapes(spatial_shapes)
    (value_shape, dtype), (loc_shape, _), (weight_shape, _) = specs
    output_shape(value_shape, loc_shape, weight_shape, levels)
    _, _, heads, channels = (int(d) for d in value_shape)
    queries, points = int(loc_shape[1]), int(loc_shape[4])
    if queries < 0 or points < 0:
        raise ValueError(f"layer {name!r}: the ONNX form of ms_deform_attn needs static queries and points, got "
                         f"sampling_locations {tuple(loc_shape)}")

    def fp32(x, what):
        return x if dtype == trt.float32 else g.op("Cast", [x], f"{name}/{what}_fp32", to=TensorProto.FLOAT)

    value, locations, weights = fp32(xs[0], "value"), fp32(xs[1], "locations"), fp32(xs[2], "weights")
    grid = g.op("Sub", [g.op("Mul", [locations, g.const(np.float32(2), f"{name}/two")], f"{name}/grid_2x"),
                        g.const(np.float32(1), f"{name}/one")], f"{name}/grid")
    samples, start = [], 0
    for level, (h, w) in enumerate(levels):
        at = f"{name}/level{level}"
        rows = g.op("Slice", [value, g.int64s([start], f"{at}/start"), g.int64s([start + h * w], f"{at}/end"),
                              g.int64s([1], f"{at}/axis")], f"{at}/value")                       # (B, HW, M, D)
        cells = g.op("Reshape", [g.op("Transpose", [rows], f"{at}/heads_first", perm=[0, 2, 3, 1]),
                                 g.int64s([-1, channels, h, w], f"{at}/cells_dims")], f"{at}/cells")
        picked = g.op("Gather", [grid, g.const(np.int64(level), f"{at}/index")], f"{at}/grid", axis=3)
        level_grid = g.op("Reshape", [g.op("Transpose", [picked], f"{at}/grid_heads_first", perm=[0, 2, 1, 3, 4]),
                                      g.int64s([-1, queries, points, 2], f"{at}/grid_dims")], f"{at}/grid_per_head")
        samples.append(g.op("GridSample", [cells, level_grid], f"{at}/sample", mode="bilinear",
                            padding_mode="zeros", align_corners=0))                             # (B*M, D, Q, P)
        start += h * w
    stacked = g.op("Concat", samples, f"{name}/samples", axis=3)
    per_head = g.op("Reshape", [g.op("Transpose", [weights], f"{name}/weights_heads_first", perm=[0, 2, 1, 3, 4]),
                                g.int64s([-1, 1, queries, len(levels) * points], f"{name}/weights_dims")],
                    f"{name}/weights")
    summed = g.op("ReduceSum", [g.op("Mul", [stacked, per_head], f"{name}/weighted"),
                                g.int64s([3], f"{name}/sum_axis")], f"{name}/sum", keepdims=0)  # (B*M, D, Q)
    flat = g.op("Reshape", [summed, g.int64s([-1, heads * channels, queries], f"{name}/out_dims")], f"{name}/flat")
    if dtype == trt.float32:
        g.node("Transpose", [flat], name, outputs=ys, perm=[0, 2, 1])
    else:
        g.node("Cast", [g.op("Transpose", [flat], f"{name}/fp32", perm=[0, 2, 1])], name, outputs=ys,
               to=TensorProto.FLOAT16)
