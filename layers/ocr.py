"""Blocks of the PP-OCR networks over TensorRT's network API: PP-LCNetV3 (folded re-parameterised convolutions with
learnable affine blocks), squeeze-excitation with a hard-sigmoid gate of any slope, the detector's RSE layers and
the recognizer's SVTR attention. Each mirrors the module of the same name in zoo/ppocr/reference.py, and its output
tensor carries that module's name (layers/core.py).
"""
from __future__ import annotations

import numpy as np

from wts.weight_map import WeightMap
from zoo.trt_api import trt

from . import core, mobile


def affine(net, weights: WeightMap, prefix: str, x):
    """x * scale + bias with one scalar each (PP-LCNetV3's learnable affine block): a uniform scale layer."""
    dtype = core.weight_dtype(x)
    scale = weights.take(f"{prefix}.scale", (1,)).astype(dtype)
    shift = weights.take(f"{prefix}.bias", (1,)).astype(dtype)
    return core.named(net.add_scale(x, trt.ScaleMode.UNIFORM, shift, scale, None), prefix)


def hard_sigmoid(net, x, slope: float, name: str):
    """clip(slope * x + 0.5, 0, 1): TensorRT's HARD_SIGMOID with alpha = slope, beta = 0.5."""
    layer = net.add_activation(x, trt.ActivationType.HARD_SIGMOID)
    layer.alpha, layer.beta = slope, 0.5
    return core.named(layer, name)


def rep_conv(net, weights: WeightMap, prefix: str, x, out_channels: int, kernel: int, stride=1, groups: int = 1,
             act: bool = True):
    """RepConv: conv (with bias) -> affine -> [hard-swish -> affine]."""
    y = core.conv2d(net, weights, f"{prefix}.conv", x, out_channels, kernel, stride, kernel // 2, groups)
    y = affine(net, weights, f"{prefix}.lab", y)
    if act:
        y = mobile.hardswish(net, y, f"{prefix}.act/hardswish")
        y = affine(net, weights, f"{prefix}.act.lab", y)
    return core.rename(y, prefix)


def squeeze_excite(net, weights: WeightMap, prefix: str, x, slope: float, residual: bool = False):
    """SqueezeExcite: x * gate (or x + x * gate), gate = hard_sigmoid(conv2(relu(conv1(mean_hw(x)))))."""
    channels = x.shape[1]
    s = core.global_avg_pool(net, x, f"{prefix}/pool")
    s = core.conv2d(net, weights, f"{prefix}.conv1", s, channels // 4, 1)
    s = core.activation(net, s, "relu", f"{prefix}/relu")
    s = core.conv2d(net, weights, f"{prefix}.conv2", s, channels, 1)
    s = hard_sigmoid(net, s, slope, f"{prefix}/gate")
    if not residual:
        return core.multiply(net, x, s, prefix)
    return core.add(net, x, core.multiply(net, x, s, f"{prefix}/scaled"), prefix)


def lcnet_block(net, weights: WeightMap, prefix: str, x, out_channels: int, kernel: int, stride, se: bool,
                se_slope: float):
    """LCNetV3Block: depthwise RepConv (no activation when it halves both sides), optional SE, pointwise RepConv."""
    stride = tuple(stride)
    y = rep_conv(net, weights, f"{prefix}.dw_conv", x, x.shape[1], kernel, stride, groups=x.shape[1],
                 act=stride != (2, 2))
    if se:
        y = squeeze_excite(net, weights, f"{prefix}.se", y, se_slope)
    y = rep_conv(net, weights, f"{prefix}.pw_conv", y, out_channels, 1)
    return core.rename(y, prefix)


def rse_layer(net, weights: WeightMap, prefix: str, x, out_channels: int, kernel: int, se_slope: float):
    """RSELayer of the detector's neck: conv (no bias) then residual squeeze-excitation."""
    y = core.conv2d(net, weights, f"{prefix}.in_conv", x, out_channels, kernel, 1, kernel // 2, bias=False)
    return squeeze_excite(net, weights, f"{prefix}.se", y, se_slope, residual=True)


def tokens_from_row(net, x, name: str):
    """[N, C, H, W] -> [N, H*W, C] (flatten(2).transpose(1, 2))."""
    layer = net.add_shuffle(x)
    layer.reshape_dims = (0, 0, -1)
    layer.second_transpose = (0, 2, 1)
    return core.named(layer, name)


def row_from_tokens(net, x, height: int, name: str):
    """[N, H*W, C] -> [N, C, H, W] for a known H (the inverse of tokens_from_row)."""
    layer = net.add_shuffle(x)
    layer.first_transpose = (0, 2, 1)
    layer.reshape_dims = (0, 0, height, -1)
    return core.named(layer, name)


def svtr_attention(net, weights: WeightMap, prefix: str, x, heads: int):
    """Attention of an SVTR block on [N, L, C]: qkv = Linear(C, 3C) split as (3, heads, C / heads), softmax(q k^T
    / sqrt(C / heads)) v, then proj = Linear(C, C). Keys <prefix>.qkv.*, <prefix>.proj.*."""
    dim = x.shape[-1]
    head_dim = dim // heads
    qkv = core.linear(net, weights, f"{prefix}.qkv", x, 3 * dim)
    layer = net.add_shuffle(qkv)
    layer.reshape_dims = (0, 0, 3, heads, head_dim)
    layer.second_transpose = (2, 0, 3, 1, 4)                 # [3, N, heads, L, head_dim]
    qkv = core.named(layer, f"{prefix}/heads")
    q, k, v = (core.named(net.add_gather(qkv, core.constant(net, np.array(i, np.int32), f"{prefix}/{n}/index"), 0),
                          f"{prefix}/{n}") for i, n in enumerate("qkv"))
    scale = core.constant(net, np.full((1, 1, 1, 1), head_dim ** -0.5, core.weight_dtype(x)), f"{prefix}/scale")
    q = core.multiply(net, q, scale, f"{prefix}/q_scaled")
    logits = net.add_matrix_multiply(q, trt.MatrixOperation.NONE, k, trt.MatrixOperation.TRANSPOSE)
    attention = core.softmax(net, core.named(logits, f"{prefix}/logits"), f"{prefix}/softmax", axis=3)
    mixed = core.named(net.add_matrix_multiply(attention, trt.MatrixOperation.NONE, v, trt.MatrixOperation.NONE),
                       f"{prefix}/mixed")
    layer = net.add_shuffle(mixed)
    layer.first_transpose = (0, 2, 1, 3)                     # [N, L, heads, head_dim]
    layer.reshape_dims = (0, 0, dim)
    return core.linear(net, weights, f"{prefix}.proj", core.named(layer, f"{prefix}/merged"), dim)


def svtr_block(net, weights: WeightMap, prefix: str, x, hidden: int, heads: int):
    """x + attention(norm1(x)), then + fc2(swish(fc1(norm2(x))))."""
    from .transformer import layer_norm
    dim = x.shape[-1]
    a = svtr_attention(net, weights, f"{prefix}.mixer", layer_norm(net, weights, f"{prefix}.norm1", x, 1e-5), heads)
    x = core.add(net, x, a, f"{prefix}/attention_residual")
    h = core.linear(net, weights, f"{prefix}.fc1", layer_norm(net, weights, f"{prefix}.norm2", x, 1e-5), hidden)
    h = core.linear(net, weights, f"{prefix}.fc2", core.activation(net, h, "silu", f"{prefix}/swish"), dim)
    return core.add(net, x, h, prefix)
