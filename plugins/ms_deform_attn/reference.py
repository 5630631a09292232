"""The plain-PyTorch definition of `zoo::ms_deform_attn`: what the reference backend runs, and what the Triton
kernel, the ONNX form and the plain-layer form are held equal to. See the package docstring for the formula."""
from __future__ import annotations

import numbers

import numpy as np
import torch
import torch.nn.functional as F

from zoo.trt_api import trt
from zoo.trt_api.plugins import TensorSpec

OP_ID = "zoo::ms_deform_attn"
MAX_LEVELS = 4     # levels the kernel takes as compile-time constants (RT-DETR has 3, Deformable DETR 4)
MAX_SIDE = 1 << 15  # a level's height or width; keeps every index inside int32


def level_shapes(spatial_shapes) -> tuple[tuple[int, int], ...]:
    """((H_0, W_0), ...) from pairs or from the flat (H_0, W_0, H_1, W_1, ...) int array the plugin op carries (a
    TensorRT plugin attribute cannot be a tuple of tuples); a ValueError naming the bad value otherwise."""
    flat = np.asarray(spatial_shapes, dtype=object).reshape(-1)
    if flat.size == 0 or flat.size % 2 or flat.size > 2 * MAX_LEVELS:
        raise ValueError(f"ms_deform_attn: spatial_shapes must hold 1..{MAX_LEVELS} (H, W) pairs, got "
                         f"{np.asarray(spatial_shapes).tolist()!r}")
    for v in flat:
        if isinstance(v, (bool, np.bool_)) or not isinstance(v, numbers.Integral) or not 1 <= v <= MAX_SIDE:
            raise ValueError(f"ms_deform_attn: spatial_shapes must be integers in 1..{MAX_SIDE}, got {v!r}")
    return tuple((int(flat[i]), int(flat[i + 1])) for i in range(0, flat.size, 2))


def shapes_attribute(spatial_shapes) -> np.ndarray:
    """The plugin attribute: the level shapes as a flat int32 array (H_0, W_0, H_1, W_1, ...)."""
    return np.asarray(level_shapes(spatial_shapes), np.int32).reshape(-1)


def output_shape(value_shape, loc_shape, weight_shape, spatial_shapes) -> tuple[int, int, int]:
    """(B, Q, M * D) for value (B, S, M, D), sampling locations (B, Q, M, L, P, 2) and attention weights
    (B, Q, M, L, P); -1 (dynamic) stays -1; anything that does not fit is a ValueError naming both shapes."""
    levels = level_shapes(spatial_shapes)
    value_shape, loc_shape, weight_shape = (tuple(int(d) for d in s) for s in (value_shape, loc_shape, weight_shape))
    if len(value_shape) != 4 or len(loc_shape) != 6 or len(weight_shape) != 5:
        raise ValueError(f"ms_deform_attn: inputs must be value (B, S, M, D), sampling_locations (B, Q, M, L, P, 2) "
                         f"and attention_weights (B, Q, M, L, P), got {value_shape}, {loc_shape}, {weight_shape}")
    b, s, m, d = value_shape
    cells = sum(h * w for h, w in levels)
    expected = (b, loc_shape[1], m, len(levels), loc_shape[4])

    def differs(x, y):
        return x >= 0 and y >= 0 and x != y

    if differs(s, cells) or loc_shape[5] != 2 or any(differs(x, y) for x, y in zip(loc_shape[:5], expected)) or \
            any(differs(x, y) for x, y in zip(weight_shape, loc_shape[:5])):
        raise ValueError(f"ms_deform_attn: value {value_shape}, sampling_locations {loc_shape} and attention_weights "
                         f"{weight_shape} do not fit {len(levels)} levels {list(levels)} ({cells} cells)")
    if m < 0 or d < 0:
        raise ValueError(f"ms_deform_attn: heads and channels of value {value_shape} must be static")
    return b if b >= 0 else loc_shape[0], loc_shape[1], m * d


def attention_shapes(inputs: list[TensorSpec], *, spatial_shapes) -> list[TensorSpec]:
    if len(inputs) != 3:
        raise ValueError(f"ms_deform_attn takes three inputs (value, sampling_locations, attention_weights), got "
                         f"{len(inputs)}")
    dtypes = [t.dtype for t in inputs]
    if dtypes[0] not in (trt.float32, trt.float16) or any(d != dtypes[0] for d in dtypes):
        raise ValueError(f"ms_deform_attn: inputs must all be FP32 or all FP16, got {dtypes}")
    return [TensorSpec(output_shape(*(t.shape for t in inputs), spatial_shapes), dtypes[0])]


def check_inputs(value, sampling_locations, attention_weights, spatial_shapes) -> tuple[tuple[int, int], ...]:
    """The level shapes, after checking the tensors' shapes and dtypes as the plugin's shape function does."""
    output_shape(value.shape, sampling_locations.shape, attention_weights.shape, spatial_shapes)
    dtypes = {value.dtype, sampling_locations.dtype, attention_weights.dtype}
    if len(dtypes) != 1 or value.dtype not in (torch.float32, torch.float16):
        raise ValueError(f"ms_deform_attn: inputs must all be float32 or all float16, got {sorted(map(str, dtypes))}")
    return level_shapes(spatial_shapes)


def ms_deform_attn_reference(value: torch.Tensor, sampling_locations: torch.Tensor, attention_weights: torch.Tensor,
                             spatial_shapes) -> torch.Tensor:
    """(B, S, M, D), (B, Q, M, L, P, 2), (B, Q, M, L, P) -> (B, Q, M * D), in the inputs' dtype, computed in FP32.

    Level l's cells are value[:, start_l : start_l + H_l * W_l] (row-major); each head samples it bilinearly at
    (x * W_l - 0.5, y * H_l - 0.5) in pixels, zero outside, and sums the samples weighted by the attention weights:
    grid_sample(align_corners=False, padding_mode="zeros") at 2 * location - 1."""
    levels = check_inputs(value, sampling_locations, attention_weights, spatial_shapes)
    b, _, m, d = value.shape
    q, points = sampling_locations.shape[1], sampling_locations.shape[4]
    per_level = value.float().split([h * w for h, w in levels], dim=1)
    grids = (2 * sampling_locations.float() - 1).permute(0, 2, 1, 3, 4, 5).flatten(0, 1)    # (B*M, Q, L, P, 2)
    samples = []
    for level, (h, w) in enumerate(levels):
        cells = per_level[level].permute(0, 2, 3, 1).reshape(b * m, d, h, w)
        samples.append(F.grid_sample(cells, grids[:, :, level], mode="bilinear", padding_mode="zeros",
                                     align_corners=False))                                   # (B*M, D, Q, P)
    weights = attention_weights.float().permute(0, 2, 1, 3, 4).reshape(b * m, 1, q, len(levels) * points)
    out = (torch.cat(samples, dim=-1) * weights).sum(-1)                                    # (B*M, D, Q)
    return out.reshape(b, m * d, q).transpose(1, 2).contiguous().to(value.dtype)


def attention_forward(value, sampling_locations, attention_weights, *, spatial_shapes) -> torch.Tensor:
    """The plugin op's forward: the reference with the level shapes as the op's keyword attribute."""
    return ms_deform_attn_reference(value, sampling_locations, attention_weights, spatial_shapes)
