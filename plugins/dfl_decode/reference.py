"""The plain-PyTorch definition of `zoo::dfl_decode`: what the reference backend runs, and what the Triton kernel
and the TensorRT plugin are held equal to. See the package docstring for the layout."""
from __future__ import annotations

import numbers

import torch

from zoo.trt_api import trt
from zoo.trt_api.plugins import TensorSpec

OP_ID = "zoo::dfl_decode"
MAX_REG_MAX = 64  # bins per side the kernel holds in registers


def check_attrs(stride, reg_max) -> tuple[int, int]:
    """The attributes as the exact `int`s TensorRT's `tensorrt.plugin` checks, or a ValueError naming the bad one."""
    if (isinstance(stride, bool) or not isinstance(stride, numbers.Real) or stride != int(stride) or stride <= 0):
        raise ValueError(f"dfl_decode: stride must be a positive integer, got {stride!r}")
    if isinstance(reg_max, bool) or not isinstance(reg_max, numbers.Integral) or not 1 <= reg_max <= MAX_REG_MAX:
        raise ValueError(f"dfl_decode: reg_max must be an integer in 1..{MAX_REG_MAX}, got {reg_max!r}")
    return int(stride), int(reg_max)


def output_shape(box_shape, cls_shape, *, stride, reg_max) -> tuple[int, int, int]:
    """(B, 4 + nc, H*W) for box logits (B, 4*reg_max, H, W) and class logits (B, nc, H, W); -1 stays -1."""
    _, reg_max = check_attrs(stride, reg_max)
    if len(box_shape) != 4 or len(cls_shape) != 4:
        raise ValueError(f"dfl_decode: inputs must be (B, 4*reg_max, H, W) and (B, nc, H, W), got "
                         f"{tuple(box_shape)} and {tuple(cls_shape)}")
    b, c, h, w = (int(d) for d in box_shape)
    if c != -1 and c != 4 * reg_max:
        raise ValueError(f"dfl_decode: box input has {c} channels, expected 4 * reg_max = {4 * reg_max}")
    if tuple(int(d) for d in cls_shape[2:]) != (h, w) or cls_shape[1] < 1:
        raise ValueError(f"dfl_decode: class input {tuple(cls_shape)} does not match box input {tuple(box_shape)}")
    nc = int(cls_shape[1])
    return b, 4 + nc, (-1 if -1 in (h, w) else h * w)


def decode_shapes(inputs: list[TensorSpec], *, stride, reg_max) -> list[TensorSpec]:
    if len(inputs) != 2:
        raise ValueError(f"dfl_decode takes two inputs (box and class logits), got {len(inputs)}")
    box, cls = inputs
    if box.dtype not in (trt.float32, trt.float16) or cls.dtype != box.dtype:
        raise ValueError(f"dfl_decode: inputs must both be FP32 or both FP16, got {box.dtype} and {cls.dtype}")
    return [TensorSpec(output_shape(box.shape, cls.shape, stride=stride, reg_max=reg_max), trt.float32)]


def decode_reference(box: torch.Tensor, cls: torch.Tensor, *, stride: int, reg_max: int) -> torch.Tensor:
    """One level: (B, 4*reg_max, H, W) and (B, nc, H, W) -> (B, 4 + nc, H*W) FP32: cx, cy, w, h in input pixels,
    then sigmoid scores. Distance per side = sum_k k * softmax(logits)_k over reg_max bins; the anchor of cell
    (x, y) is (x + 0.5, y + 0.5); x1y1 = anchor - (l, t), x2y2 = anchor + (r, b); times stride."""
    stride, reg_max = check_attrs(stride, reg_max)
    output_shape(tuple(box.shape), tuple(cls.shape), stride=stride, reg_max=reg_max)
    for t in (box, cls):
        if t.dtype not in (torch.float32, torch.float16):
            raise ValueError(f"dfl_decode: inputs must be float32 or float16, got {t.dtype}")
    b, _, h, w = box.shape
    logits = box.float().reshape(b, 4, reg_max, h * w)
    bins = torch.arange(reg_max, dtype=torch.float32, device=box.device).view(1, 1, reg_max, 1)
    dist = (logits.softmax(2) * bins).sum(2)                                              # (B, 4, HW)
    ys, xs = torch.meshgrid(torch.arange(h, device=box.device, dtype=torch.float32) + 0.5,
                            torch.arange(w, device=box.device, dtype=torch.float32) + 0.5, indexing="ij")
    anchor = torch.stack((xs.reshape(-1), ys.reshape(-1)))                                # (2, HW)
    x1y1, x2y2 = anchor - dist[:, :2], anchor + dist[:, 2:]
    xywh = torch.cat(((x1y1 + x2y2) / 2, x2y2 - x1y1), 1) * stride
    return torch.cat((xywh, cls.float().reshape(b, -1, h * w).sigmoid()), 1)
