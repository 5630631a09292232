"""The plain-PyTorch definition of `zoo::yolo_decode`: what the reference backend runs, and what the Triton kernel
and the TensorRT plugin are held equal to. See the package docstring for the layout."""
from __future__ import annotations

import numbers

import numpy as np
import torch

from zoo.trt_api import trt
from zoo.trt_api.plugins import TensorSpec

OP_ID = "zoo::yolo_decode"


def check_attrs(stride, anchors, num_outputs) -> tuple[int, np.ndarray, int]:
    """The op's attributes in the exact types TensorRT's `tensorrt.plugin` checks (`int`, `int`,
    1-D `np.float32` array), or a ValueError that names the bad one.

    Accepts what a builder naturally has at hand: a stride read from a float buffer (`8.0`), anchors as (na, 2).
    """
    if (isinstance(stride, bool) or not isinstance(stride, numbers.Real) or not np.isfinite(stride)
            or stride != int(stride) or stride <= 0):
        raise ValueError(f"yolo_decode: stride must be a positive integer, got {stride!r}")
    if isinstance(num_outputs, bool) or not isinstance(num_outputs, numbers.Integral) or num_outputs < 6:
        raise ValueError(f"yolo_decode: num_outputs must be an integer 5 + num_classes >= 6, got {num_outputs!r}")
    a = np.asarray(anchors, dtype=np.float32).reshape(-1)
    if a.size == 0 or a.size % 2:
        raise ValueError(f"yolo_decode: anchors must be (w, h) pairs, got {a.size} values")
    if not np.all(np.isfinite(a)) or np.any(a <= 0):
        raise ValueError(f"yolo_decode: anchors must be positive and finite, got {a.tolist()}")
    return int(stride), np.ascontiguousarray(a), int(num_outputs)


def output_shape(shape, *, stride, anchors, num_outputs) -> tuple[int, int, int]:
    """(B, na*H*W, no) for a feature shape (B, na*no, H, W); -1 (dynamic) stays -1."""
    _, anchors, num_outputs = check_attrs(stride, anchors, num_outputs)
    na = anchors.size // 2
    if len(shape) != 4:
        raise ValueError(f"yolo_decode: input must be (B, na*no, H, W), got shape {tuple(shape)}")
    b, c, h, w = (int(d) for d in shape)
    if c != -1 and c != na * num_outputs:
        raise ValueError(f"yolo_decode: input has {c} channels, but {na} anchors x num_outputs {num_outputs} "
                         f"= {na * num_outputs} (channel = anchor * num_outputs + field)")
    cells = -1 if -1 in (h, w) else na * h * w
    return b, cells, num_outputs


def decode_shapes(inputs: list[TensorSpec], *, stride, anchors, num_outputs) -> list[TensorSpec]:
    """Shape function for the reference backend: one FP32 output (B, na*H*W, no)."""
    if len(inputs) != 1:
        raise ValueError(f"yolo_decode takes one input, got {len(inputs)}")
    (feat,) = inputs
    if feat.dtype not in (trt.float32, trt.float16):
        raise ValueError(f"yolo_decode: input must be FP32 or FP16, got {feat.dtype}")
    return [TensorSpec(output_shape(feat.shape, stride=stride, anchors=anchors, num_outputs=num_outputs),
                       trt.float32)]


def decode_reference(feat: torch.Tensor, *, stride: int, anchors: np.ndarray, num_outputs: int) -> torch.Tensor:
    """(B, na*no, H, W) raw conv output -> (B, na*H*W, no) FP32, the operations in the order YOLOv5's Detect uses:
    xy = (2*sig + (cell - 0.5)) * stride, wh = (2*sig)^2 * anchor_px, then sig(obj), sig(cls...)."""
    stride, anchors, num_outputs = check_attrs(stride, anchors, num_outputs)
    b, _, h, w = feat.shape
    output_shape(tuple(feat.shape), stride=stride, anchors=anchors, num_outputs=num_outputs)
    if feat.dtype not in (torch.float32, torch.float16):
        raise ValueError(f"yolo_decode: input must be float32 or float16, got {feat.dtype}")
    na = anchors.size // 2
    s = feat.float().view(b, na, num_outputs, h, w).permute(0, 1, 3, 4, 2).sigmoid()  # (B, na, H, W, no)
    yv, xv = torch.meshgrid(torch.arange(h, device=feat.device, dtype=torch.float32),
                            torch.arange(w, device=feat.device, dtype=torch.float32), indexing="ij")
    grid = torch.stack((xv, yv), 2) - 0.5                                            # (H, W, 2)
    anchor_px = torch.from_numpy(anchors).to(feat.device).view(1, na, 1, 1, 2)
    xy = (s[..., :2] * 2 + grid) * stride
    wh = (s[..., 2:4] * 2) ** 2 * anchor_px
    return torch.cat((xy, wh, s[..., 4:]), 4).reshape(b, na * h * w, num_outputs)
