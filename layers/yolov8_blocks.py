"""The blocks of YOLOv8 and YOLO11 (ultralytics), named like the PyTorch classes and keyed by their state_dict
prefix: C2f, C3k2 (with Bottleneck or C3k inside), C3k, DWConv, C2PSA with its attention. SPPF and the C3 under
C3k are layers.blocks' own. See docs/yolov8.md for the shapes."""
from __future__ import annotations

import math

import numpy as np

from wts.weight_map import WeightMap
from zoo.trt_api import trt

from . import core
from .blocks import bottleneck, c3, conv_bn_act


def dwconv(net, weights: WeightMap, prefix: str, x, out_channels: int, kernel: int = 1, stride: int = 1,
           act: str | None = "silu"):
    """Conv with groups = gcd(c_in, c_out): depthwise when they are equal."""
    return conv_bn_act(net, weights, prefix, x, out_channels, kernel, stride,
                       groups=math.gcd(x.shape[1], out_channels), act=act)


def _csp_split(net, weights: WeightMap, prefix: str, x, hidden: int) -> list:
    """cv1 to 2 * hidden channels, then its two halves (the `.split((c, c), 1)` of C2f, C3k2 and C2PSA)."""
    y = conv_bn_act(net, weights, f"{prefix}.cv1", x, 2 * hidden, 1)
    return core.split(net, y, (hidden, hidden), (f"{prefix}/split0", f"{prefix}/split1"))


def _c2f_layout(net, weights: WeightMap, prefix: str, x, out_channels: int, repeats: int, expansion: float,
                inner) -> object:
    """cv1 split [a, b]; inner(i, last) for i < repeats, each appended; cv2 over [a, b, m0, m1, ...]."""
    hidden = int(out_channels * expansion)
    pieces = _csp_split(net, weights, prefix, x, hidden)
    for i in range(repeats):
        pieces.append(inner(f"{prefix}.m.{i}", pieces[-1], hidden))
    cat = core.concat(net, pieces, f"{prefix}/concat")
    return core.rename(conv_bn_act(net, weights, f"{prefix}.cv2", cat, out_channels, 1), prefix)


def c2f(net, weights: WeightMap, prefix: str, x, out_channels: int, repeats: int, shortcut: bool = False,
        expansion: float = 0.5):
    """YOLOv8's C2f: bottlenecks (3x3, 3x3, e=1.0) chained on the last piece, every output concatenated."""
    def inner(name, y, c):
        return bottleneck(net, weights, name, y, c, shortcut, expansion=1.0, kernels=(3, 3))

    return _c2f_layout(net, weights, prefix, x, out_channels, repeats, expansion, inner)


def c3k(net, weights: WeightMap, prefix: str, x, out_channels: int, repeats: int = 2, shortcut: bool = True):
    """YOLO11's C3k: a C3 whose bottlenecks are 3x3, 3x3."""
    return c3(net, weights, prefix, x, out_channels, repeats, shortcut, kernels=(3, 3))


def c3k2(net, weights: WeightMap, prefix: str, x, out_channels: int, repeats: int, use_c3k: bool,
         expansion: float = 0.5, shortcut: bool = True):
    """YOLO11's C3k2: the C2f layout with C3k(c, c, 2) inside (`use_c3k`) or Bottleneck(c, c, e=0.5, 3x3)."""
    def inner(name, y, c):
        if use_c3k:
            return c3k(net, weights, name, y, c, 2, shortcut)
        return bottleneck(net, weights, name, y, c, shortcut, expansion=0.5, kernels=(3, 3))

    return _c2f_layout(net, weights, prefix, x, out_channels, repeats, expansion, inner)


def attention(net, weights: WeightMap, prefix: str, x, num_heads: int, attn_ratio: float = 0.5):
    """Multi-head self-attention over the H*W positions of x (B, C, H, W), as matrix multiplies:

    qkv conv -> (B, heads, 2*key_dim + head_dim, N) -> q, k, v along axis 2; attn = softmax(q^T k * scale) over
    the last axis; out = v attn^T reshaped to (B, C, H, W), plus pe (depthwise 3x3) of v; then proj.
    """
    _, c, h, w = x.shape
    n = h * w
    head_dim = c // num_heads
    key_dim = int(head_dim * attn_ratio)
    qkv = conv_bn_act(net, weights, f"{prefix}.qkv", x, c + 2 * key_dim * num_heads, 1, act=None)
    qkv = core.reshape(net, qkv, (0, num_heads, 2 * key_dim + head_dim, n), f"{prefix}/view")
    q, k, v = core.split(net, qkv, (key_dim, key_dim, head_dim), (f"{prefix}/q", f"{prefix}/k", f"{prefix}/v"),
                         axis=2)
    scores = core.named(net.add_matrix_multiply(q, trt.MatrixOperation.TRANSPOSE, k, trt.MatrixOperation.NONE),
                        f"{prefix}/qk")                                                  # (B, heads, N, N)
    scale = core.constant(net, np.full((1, 1, 1, 1), key_dim ** -0.5, core.weight_dtype(x)), f"{prefix}/scale")
    attn = core.softmax(net, core.multiply(net, scores, scale, f"{prefix}/scaled"), f"{prefix}/softmax", axis=3)
    out = core.named(net.add_matrix_multiply(v, trt.MatrixOperation.NONE, attn, trt.MatrixOperation.TRANSPOSE),
                     f"{prefix}/av")                                                     # (B, heads, head_dim, N)
    out = core.reshape(net, out, (0, c, h, w), f"{prefix}/merge")
    v_image = core.reshape(net, v, (0, c, h, w), f"{prefix}/v_image")
    pe = conv_bn_act(net, weights, f"{prefix}.pe", v_image, c, 3, groups=c, act=None)
    y = core.add(net, out, pe, f"{prefix}/add_pe")
    return core.rename(conv_bn_act(net, weights, f"{prefix}.proj", y, c, 1, act=None), prefix)


def psa_block(net, weights: WeightMap, prefix: str, x, num_heads: int, attn_ratio: float = 0.5):
    """x + attn(x), then + ffn (Conv 1x1 to 2c, Conv 1x1 back to c without activation)."""
    c = x.shape[1]
    x = core.add(net, x, attention(net, weights, f"{prefix}.attn", x, num_heads, attn_ratio), f"{prefix}/add_attn")
    y = conv_bn_act(net, weights, f"{prefix}.ffn.0", x, 2 * c, 1)
    y = conv_bn_act(net, weights, f"{prefix}.ffn.1", y, c, 1, act=None)
    core.rename(y, f"{prefix}.ffn")
    return core.add(net, x, y, prefix)


def c2psa(net, weights: WeightMap, prefix: str, x, repeats: int, expansion: float = 0.5):
    """YOLO11's C2PSA: cv1 split [a, b]; b through `repeats` PSABlocks (c // 64 heads); cv2 over cat(a, b)."""
    c1 = x.shape[1]
    hidden = int(c1 * expansion)
    a, b = _csp_split(net, weights, prefix, x, hidden)
    for i in range(repeats):
        b = psa_block(net, weights, f"{prefix}.m.{i}", b, hidden // 64)
    if repeats:
        core.rename(b, f"{prefix}.m")
    cat = core.concat(net, [a, b], f"{prefix}/concat")
    return core.rename(conv_bn_act(net, weights, f"{prefix}.cv2", cat, c1, 1), prefix)
