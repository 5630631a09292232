"""Adaptive average pooling (nn.AdaptiveAvgPool2d) with TensorRT layers, for any input and output size.

TensorRT has no adaptive pooling layer, and the input size is fixed when the network is built, so each case becomes
the cheapest exact layer: an identity when the sizes agree, a pooling layer when the output divides the input
(every bin then has the same window), and otherwise two matrix multiplies with constant averaging matrices,
out = P_h @ x @ P_w^T, where row i of P averages PyTorch's bin [floor(i*H/h), ceil((i+1)*H/h)) (bins may overlap, or
repeat a pixel when the output is larger than the input, as VGG's 7x7 pooling of a small image does).
"""
from __future__ import annotations

import math

import numpy as np

from zoo.trt_api import trt

from .core import constant, named, weight_dtype


def averaging_matrix(size: int, out: int) -> np.ndarray:
    """[out, size]: row i holds 1/n on PyTorch's adaptive bin i of an axis of `size` pixels."""
    p = np.zeros((out, size), np.float32)
    for i in range(out):
        start, end = (i * size) // out, math.ceil((i + 1) * size / out)
        p[i, start:end] = 1.0 / (end - start)
    return p


def adaptive_avg_pool(net, x, name: str, output_size):
    """nn.AdaptiveAvgPool2d(output_size) on NCHW with known H and W."""
    oh, ow = (output_size, output_size) if isinstance(output_size, int) else tuple(output_size)
    h, w = x.shape[2], x.shape[3]
    if (h, w) == (oh, ow):
        return named(net.add_identity(x), name)
    if h % oh == 0 and w % ow == 0:
        layer = net.add_pooling_nd(x, trt.PoolingType.AVERAGE, (h // oh, w // ow))
        layer.stride_nd = (h // oh, w // ow)
        return named(layer, name)
    dtype = weight_dtype(x)
    pw = constant(net, averaging_matrix(w, ow).T.reshape(1, 1, w, ow).astype(dtype), f"{name}/columns")
    ph = constant(net, averaging_matrix(h, oh).reshape(1, 1, oh, h).astype(dtype), f"{name}/rows")
    rows = named(net.add_matrix_multiply(x, trt.MatrixOperation.NONE, pw, trt.MatrixOperation.NONE),
                 f"{name}/pool_columns")
    return named(net.add_matrix_multiply(ph, trt.MatrixOperation.NONE, rows, trt.MatrixOperation.NONE), name)
