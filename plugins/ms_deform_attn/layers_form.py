"""`zoo::ms_deform_attn` as plain network layers: TensorRT's grid-sample layer once per level, so that an engine
without the plugin is one flag away. The same computation as `reference.ms_deform_attn_reference`, step by step:

    grid     = 2 * sampling_locations - 1                                  (B, Q, M, L, P, 2)
    level l: cells_l = value[:, start_l : start_l + H_l W_l]  -> (B*M, D, H_l, W_l)   (a gather of constant rows)
             grid_l  = grid[:, :, :, l]                        -> (B*M, Q, P, 2)       (a gather of [l])
             s_l     = grid_sample(cells_l, grid_l)            -> (B*M, D, Q, P)       LINEAR, FILL, no align_corners
    out      = sum over (l, p) of concat_l(s_l) * weights      -> (B*M, D, Q) -> (B, Q, M*D)

Only the batch may be dynamic: every reshape puts -1 on the batch-sized axis, and the per-level selections are
gathers with constant indices, which need no shape arithmetic.
"""
from __future__ import annotations

import numpy as np

from layers.core import constant, named, shuffle
from zoo.trt_api import trt

from .reference import level_shapes, output_shape

_NUMPY = {trt.float32: np.float32, trt.float16: np.float16}


def _gather(net, x, indices: np.ndarray, axis: int, name: str):
    return named(net.add_gather(x, constant(net, indices.astype(np.int32), f"{name}/indices"), axis), name)


def ms_deform_attn_layers(net, value, sampling_locations, attention_weights, *, spatial_shapes, name: str):
    """(B, S, M, D), (B, Q, M, L, P, 2), (B, Q, M, L, P) -> (B, Q, M * D), in the inputs' dtype."""
    levels = level_shapes(spatial_shapes)
    output_shape(value.shape, sampling_locations.shape, attention_weights.shape, levels)
    dtype = value.dtype
    if dtype not in _NUMPY or sampling_locations.dtype != dtype or attention_weights.dtype != dtype:
        raise ValueError(f"ms_deform_attn {name!r}: inputs must all be FP32 or all FP16, got {value.dtype}, "
                         f"{sampling_locations.dtype}, {attention_weights.dtype}")
    _, _, heads, channels = value.shape
    queries, points = sampling_locations.shape[1], sampling_locations.shape[4]
    ones = (1,) * 6
    two = constant(net, np.full(ones, 2, _NUMPY[dtype]), f"{name}/two")
    one = constant(net, np.full(ones, 1, _NUMPY[dtype]), f"{name}/one")
    grid = named(net.add_elementwise(
        named(net.add_elementwise(sampling_locations, two, trt.ElementWiseOperation.PROD), f"{name}/grid_2x"),
        one, trt.ElementWiseOperation.SUB), f"{name}/grid")

    samples, start = [], 0
    for level, (h, w) in enumerate(levels):
        at = f"{name}/level{level}"
        rows = _gather(net, value, np.arange(start, start + h * w), 1, f"{at}/value")           # (B, HW, M, D)
        cells = shuffle(net, rows, f"{at}/cells", first=(0, 2, 3, 1), reshape=(-1, channels, h, w))
        picked = _gather(net, grid, np.array([level]), 3, f"{at}/grid")                     # (B, Q, M, 1, P, 2)
        level_grid = shuffle(net, picked, f"{at}/grid_per_head", first=(0, 2, 1, 3, 4, 5),
                              reshape=(-1, queries, points, 2))
        sample = net.add_grid_sample(cells, level_grid)
        sample.interpolation_mode = trt.InterpolationMode.LINEAR
        sample.align_corners = False
        sample.sample_mode = trt.SampleMode.FILL
        samples.append(named(sample, f"{at}/sample"))                                        # (B*M, D, Q, P)
        start += h * w

    stacked = net.add_concatenation(samples)
    stacked.axis = 3
    stacked = named(stacked, f"{name}/samples")                                              # (B*M, D, Q, L*P)
    weights = shuffle(net, attention_weights, f"{name}/weights", first=(0, 2, 1, 3, 4),
                       reshape=(-1, 1, queries, len(levels) * points))                       # (B*M, 1, Q, L*P)
    weighted = named(net.add_elementwise(stacked, weights, trt.ElementWiseOperation.PROD), f"{name}/weighted")
    summed = named(net.add_reduce(weighted, trt.ReduceOperation.SUM, 1 << 3, False), f"{name}/sum")  # (B*M, D, Q)
    return shuffle(net, summed, name, reshape=(-1, heads * channels, queries), second=(0, 2, 1))
