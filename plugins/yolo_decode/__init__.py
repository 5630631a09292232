"""`zoo::yolo_decode`: YOLOv5's anchor-based box decode for ONE detection level, as a plugin op.

Input `feat`: the raw Detect conv output of one level, (B, na*no, H, W), FP32 or FP16 (computed in FP32), with
channel = a*no + j and j in [x, y, w, h, obj, cls0 .. cls(nc-1)], no = 5 + nc.
Attributes: `stride` (int), `anchors` (float32 [na*2], pixel (w, h) pairs), `num_outputs` (= no).

Output: (B, na*H*W, no) FP32, dense. Row a*H*W + y*W + x of batch item b holds
    cx = (2*sig(tx) - 0.5 + x) * stride      cy = (2*sig(ty) - 0.5 + y) * stride
    w  = (2*sig(tw))^2 * anchor_w            h  = (2*sig(th))^2 * anchor_h
    sig(obj), sig(cls0) ... sig(cls(nc-1))
One op per level, so P5 (3 levels), P6 (4) or any other count works; concatenating the levels' outputs along
dim 1 (P3 first) gives exactly the official YOLOv5 eval output (B, N, 5+nc), and NMS runs on that.

Why dense, unlike tensorrtx's YoloLayer plugin (docs/tensorrtx.md, the decode plugin): that plugin filtered by a
compile-time objectness threshold and appended survivors with an atomic counter into a fixed-capacity buffer.
Its count could exceed the capacity (boxes silently dropped, consumers had to clamp), only the count was cleared
so unused fields (mask[32] for detection) held garbage, and a mutated thread count was serialized. Here every
element of every row of every batch item is written by the kernel, every time: there is no counter, no
capacity, no threshold baked into the engine, no uninitialised field, no state; the output shape follows from
the input shape alone, thresholds belong to the NMS that follows, and batch items are independent.

Four implementations of the same op, held equal by tests/test_yolo_decode.py and tests/test_onnx_models.py:
- `reference.decode_reference`: plain PyTorch; what the reference backend runs (registered at import below);
- `kernel.decode_triton`: the Triton kernel (imports triton; not needed for the reference path);
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
                     cuda_forward="plugins.yolo_decode.kernel:decode_triton")
trt_plugins.register_onnx_form(OP_ID, _decode_onnx)

__all__ = ["OP_ID", "add_decode", "decode_reference", "decode_shapes"]


def add_decode(net, feat, *, stride, anchors, num_outputs, name: str):
    """Add one level's decode to `net` (TensorRT's or the reference backend's INetworkDefinition) as the AOT
    plugin op; the layer is named `name` (e.g. "model.24.decode.0"). Returns its (B, na*H*W, no) FP32 output."""
    # TensorRT checks attribute types exactly (int is not np.int64) and keyword order against the registration.
    stride, anchors, num_outputs = check_attrs(stride, anchors, num_outputs)
    attrs = {"stride": stride, "anchors": anchors, "num_outputs": num_outputs}
    return trt_plugins.add_plugin_op(net, OP_ID, [feat], attrs, name=name, qdp_module=f"{__name__}.trt_plugin",
                                     name_output=False)
