"""Fusions the reference executor applies when it does not capture intermediates, as TensorRT would:

- a convolution whose only consumer is a per-channel scale (a BatchNorm) runs as one convolution with the scale
  folded into its kernel and bias;
- sigmoid(x) whose only consumer is x * sigmoid(x) runs as one SiLU;
- x @ W^T whose only consumer adds a per-feature bias runs as one F.linear (layers.linear's matrix multiply and sum).

A fused step has the interface the executor uses for layers (`_inputs`, `_outputs`, `_run`), so the executor's
loop, typing and freeing stay as they are. Fusion skips the rounding of the hidden intermediate, as TensorRT's
fused kernels do; validation captures every tensor and therefore runs unfused.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F

from zoo.trt_api import trt
from .network import (IActivationLayer, IConvolutionLayer, IElementWiseLayer, ILayer, IMatrixMultiplyLayer,
                      IScaleLayer)


class _Fused:
    def __init__(self, inputs, outputs, run):
        self._inputs, self._outputs, self._run = inputs, outputs, run


def _fold_conv_scale(conv: IConvolutionLayer, scale: IScaleLayer) -> _Fused | None:
    if conv._kernel_t is None or scale._attrs["mode"] != trt.ScaleMode.CHANNEL or "power" in scale._t \
            or scale._attrs["channel_axis"] != 1:
        return None
    s = scale._t.get("scale")
    s = s.reshape(-1) if s is not None else torch.ones(conv._kernel_t.shape[0])
    shift = scale._t.get("shift")
    kernel = conv._kernel_t * s.reshape(-1, *([1] * (conv._kernel_t.dim() - 1)))
    bias = (conv._bias_t if conv._bias_t is not None else torch.zeros_like(s)) * s
    bias = bias + shift.reshape(-1) if shift is not None else bias
    a = conv._attrs
    stride, dilation, groups = tuple(a["stride_nd"]), tuple(a["dilation_nd"]), a["num_groups"]

    def run(xs):
        x = xs[0] if conv._pad is None else F.pad(xs[0], conv._pad)
        return [conv._conv(x, kernel, bias, stride, conv._sym_pad, dilation, groups)]

    return _Fused(conv._inputs[:1], scale._outputs, run)


def _silu(sigmoid: IActivationLayer, product: IElementWiseLayer) -> _Fused | None:
    x = sigmoid._inputs[0]
    if sigmoid._attrs["type"] != trt.ActivationType.SIGMOID or product._attrs["op"] != trt.ElementWiseOperation.PROD \
            or {id(t) for t in product._inputs} != {id(x), id(sigmoid._outputs[0])}:
        return None
    return _Fused([x], product._outputs, lambda xs: [F.silu(xs[0])])


def _linear(matmul: IMatrixMultiplyLayer, add: IElementWiseLayer) -> _Fused | None:
    """x @ W^T + b with W of shape [1, ..., 1, out, k] and b of shape [1, ..., 1, out]."""
    hidden = matmul._outputs[0]
    if matmul._attrs["op0"] != trt.MatrixOperation.NONE or matmul._attrs["op1"] != trt.MatrixOperation.TRANSPOSE \
            or add._attrs["op"] != trt.ElementWiseOperation.SUM:
        return None
    others = [t for t in add._inputs if t is not hidden]
    if len(others) != 1:
        return None
    x, w, bias = matmul._inputs[0], matmul._inputs[1], others[0]
    w_shape, b_shape, out_shape = tuple(w.shape), tuple(bias.shape), tuple(hidden.shape)
    out = w_shape[-2] if len(w_shape) >= 2 else -1
    if len(w_shape) < 2 or any(d != 1 for d in w_shape[:-2]) or len(b_shape) != len(out_shape) \
            or any(d != 1 for d in b_shape[:-1]) or b_shape[-1] != out or out < 0:
        return None
    return _Fused([x, w, bias], add._outputs,
                  lambda xs: [F.linear(xs[0], xs[1].reshape(xs[1].shape[-2:]), xs[2].reshape(-1))])


_PATTERNS = ((IConvolutionLayer, IScaleLayer, _fold_conv_scale), (IActivationLayer, IElementWiseLayer, _silu),
             (IMatrixMultiplyLayer, IElementWiseLayer, _linear))


def fuse(layers: list[ILayer], keep: set[int]) -> list:
    """Steps for `layers` (topologically sorted). `keep`: ids of tensors that must be materialised (outputs)."""
    consumers: dict[int, list[ILayer]] = {}
    for layer in layers:
        for t in layer._inputs:
            if t is not None:
                consumers.setdefault(id(t), []).append(layer)
    steps, deferred = [], {}  # id(second layer) -> the fused step that runs in its place
    for layer in layers:
        if id(layer) in deferred:  # the fused step runs where its second layer was: all its inputs exist by then
            steps.append(deferred.pop(id(layer)))
            continue
        hidden = layer._outputs[0]
        users = consumers.get(id(hidden), [])
        fused = None
        if len(layer._outputs) == 1 and len(users) == 1 and id(hidden) not in keep:
            for first, second, make in _PATTERNS:
                if isinstance(layer, first) and isinstance(users[0], second):
                    fused = make(layer, users[0])
                    break
        if fused is not None:
            deferred[id(users[0])] = fused
        else:
            steps.append(layer)
    return steps
