"""`zoo::ms_deform_attn`: multi-scale deformable attention (Deformable DETR, RT-DETR's decoder) as a plugin op.

Inputs (all FP32 or all FP16; computed in FP32, written in the inputs' dtype):
- value (B, S, M, D): M heads of D channels for S = sum_l H_l * W_l cells, the levels concatenated, each row-major;
- sampling_locations (B, Q, M, L, P, 2): per query, head, level and point, (x, y) normalised to [0, 1] over the
  level (0 and 1 are the outer edges of the first and last pixel; points may lie outside);
- attention_weights (B, Q, M, L, P): already normalised by the caller (softmax over L * P).
Attribute: `spatial_shapes`, the levels' (H_l, W_l), carried by the op as a flat int32 array (H_0, W_0, H_1, ...).

Output (B, Q, M * D): for query q and head m, channels m*D .. m*D + D - 1 hold
    sum_{l, p} attention_weights[b, q, m, l, p] * bilinear_l(value_l[b, :, m, :], x * W_l - 0.5, y * H_l - 0.5)
where bilinear_l reads level l at pixel coordinates with zeros outside the map (grid_sample with
align_corners=False, padding_mode="zeros", at 2 * location - 1).

Implementations, held equal by tests/test_ms_deform_attn.py:
- `reference.ms_deform_attn_reference`: plain PyTorch, what the reference backend runs (registered below);
- `kernel.ms_deform_attn_triton`: the Triton kernel (the reference backend's CUDA path; the engine's PTX);
- `onnx_form.ms_deform_attn_onnx`: plain ONNX operators (the ONNX backend and `export onnx`);
- `trt_plugin`: the TensorRT QDP registration whose AOT implementation embeds the kernel's PTX;
- `layers_form.ms_deform_attn_layers`: no plugin at all, TensorRT's grid-sample layer per level (`form="layers"`).
"""
from __future__ import annotations

from zoo.trt_api import plugins as trt_plugins

from .layers_form import ms_deform_attn_layers
from .reference import OP_ID, attention_forward, attention_shapes, ms_deform_attn_reference, shapes_attribute

FORMS = ("plugin", "layers")


def _attention_onnx(g, xs, ys, **attrs):
    from .onnx_form import ms_deform_attn_onnx  # imports onnx only when a network is written as ONNX
    ms_deform_attn_onnx(g, xs, ys, **attrs)


trt_plugins.register(OP_ID, shapes=attention_shapes, forward=attention_forward,
                     cuda_forward="plugins.ms_deform_attn.kernel:attention_triton")
trt_plugins.register_onnx_form(OP_ID, _attention_onnx)

__all__ = ["FORMS", "OP_ID", "add_ms_deform_attn", "ms_deform_attn_reference"]


def add_ms_deform_attn(net, value, sampling_locations, attention_weights, *, spatial_shapes, name: str,
                       form: str = "plugin"):
    """Add multi-scale deformable attention to `net` (TensorRT's, the reference backend's, or one written to ONNX):
    `form="plugin"` as the AOT plugin op named `name`, `form="layers"` as plain layers (a grid sample per level).
    Returns its (B, Q, M * D) output, named `name`, in the inputs' dtype; the batch may be dynamic."""
    if form == "layers":
        return ms_deform_attn_layers(net, value, sampling_locations, attention_weights,
                                     spatial_shapes=spatial_shapes, name=name)
    if form != "plugin":
        raise ValueError(f"ms_deform_attn {name!r}: form must be one of {FORMS}, got {form!r}")
    return trt_plugins.add_plugin_op(net, OP_ID, [value, sampling_locations, attention_weights],
                                     {"spatial_shapes": shapes_attribute(spatial_shapes)}, name=name,
                                     qdp_module=f"{__name__}.trt_plugin")
