"""`zoo::dfl_decode`: the anchor-free decode of YOLOv8 / YOLO11 for ONE detection level, as a plugin op.

Inputs: box logits (B, 4*reg_max, H, W), channel = side * reg_max + bin with side in (l, t, r, b), and class
logits (B, nc, H, W); both FP32 or both FP16 (computed in FP32). Attributes: `stride` (int), `reg_max` (int).

Output: (B, 4 + nc, H*W) FP32, channel-first like the official output. Column y*W + x of batch item b holds
    d_side = sum_k k * softmax_k(logits[side])          (DFL: expectation over the reg_max bins)
    x1, y1 = (x + 0.5, y + 0.5) - (d_l, d_t)            x2, y2 = (x + 0.5, y + 0.5) + (d_r, d_b)
    cx, cy, w, h = ((x1 + x2) / 2, (y1 + y2) / 2, x2 - x1, y2 - y1) * stride
    sigmoid(cls_0) .. sigmoid(cls_{nc-1})
Concatenating the levels' outputs along axis 2 (P3 first) gives ultralytics' eval output (B, 4 + nc, A). The
output is dense: every element is written every time, nothing is filtered or counted (unlike tensorrtx's decode,
which atomically appended survivors of a baked-in threshold for batch item 0 only).

Three implementations, held equal by tests/test_dfl_decode.py:
- `reference.decode_reference`: plain PyTorch, what the reference backend runs (registered at import below);
- `kernel.decode_triton`: the Triton kernel;
- `onnx_form.decode_onnx`: the same computation as plain ONNX operators (the ONNX backend and `export onnx`);
- `trt_plugin`: the TensorRT QDP registration whose AOT implementation embeds that kernel's PTX in the engine.
"""
from __future__ import annotations

from zoo.trt_api import plugins as trt_plugins

from .reference import OP_ID, check_attrs, decode_reference, decode_shapes


def _decode_onnx(g, xs, ys, **attrs):
    from .onnx_form import decode_onnx  # imports onnx only when a network is written as ONNX
    decode_onnx(g, xs, ys, **attrs)


trt_plugins.register(OP_ID, shapes=decode_shapes, forward=decode_reference,
                     cuda_forward="plugins.dfl_decode.kernel:decode_triton")
trt_plugins.register_onnx_form(OP_ID, _decode_onnx)

__all__ = ["OP_ID", "add_dfl_decode", "decode_reference", "decode_shapes"]


def add_dfl_decode(net, box, cls, *, stride, reg_max, name: str):
    """Add one level's decode to `net` (TensorRT's or the reference backend's) as the AOT plugin op named `name`.
    Returns its (B, 4 + nc, H*W) FP32 output."""
    stride, reg_max = check_attrs(stride, reg_max)  # TensorRT checks attribute types exactly (int, not np.int64)
    return trt_plugins.add_plugin_op(net, OP_ID, [box, cls], {"stride": stride, "reg_max": reg_max}, name=name,
                                     qdp_module=f"{__name__}.trt_plugin")
