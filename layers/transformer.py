"""Transformer ops with TensorRT layers: LayerNorm (normalization layer), multi-head self-attention (matrix
multiplies, softmax, shuffles), the class-token broadcast and token selection of a vision transformer.

Inputs are token-major, [N, L, D] (ViT) or channels-last [N, H, W, C] (ConvNeXt's blocks); LayerNorm normalizes the
last axis, as nn.LayerNorm does, so its scale and bias are constants of shape [1, ..., 1, C].
"""
from __future__ import annotations

import math

import numpy as np

from wts.weight_map import WeightMap
from zoo.trt_api import trt

from .core import cast, constant, linear_from_arrays, named, rename, weight_dtype


def layer_norm(net, weights: WeightMap, prefix: str, x, eps: float = 1e-5, name: str | None = None):
    """nn.LayerNorm(C) over the last axis: TensorRT's normalization layer with the axis as its mask, named `name`
    (default `<prefix>`)."""
    rank, c = len(x.shape), x.shape[-1]
    dtype = weight_dtype(x)
    lead = (1,) * (rank - 1)
    scale = constant(net, weights.take(f"{prefix}.weight", (c,), dtype).reshape(*lead, c), f"{prefix}.weight")
    bias = constant(net, weights.take(f"{prefix}.bias", (c,), dtype).reshape(*lead, c), f"{prefix}.bias")
    layer = net.add_normalization(x, scale, bias, 1 << (rank - 1))
    layer.epsilon = eps
    return named(layer, name or prefix)


def layer_norm_2d(net, weights: WeightMap, prefix: str, x, eps: float = 1e-6):
    """LayerNorm over the channels of NCHW (torchvision's LayerNorm2d): to channels-last, layer_norm, back, as the
    PyTorch module does; the output is named `<prefix>`."""
    to_last = named(_permute(net, x, (0, 2, 3, 1)), f"{prefix}/channels_last")
    y = layer_norm(net, weights, prefix, to_last, eps, name=f"{prefix}/normalize")
    return named(_permute(net, y, (0, 3, 1, 2)), prefix)


def _permute(net, x, perm):
    layer = net.add_shuffle(x)
    layer.first_transpose = tuple(perm)
    return layer


def _heads(net, x, num_heads: int, name: str):
    """[N, L, D] -> [N, heads, L, D / heads]."""
    layer = net.add_shuffle(x)
    layer.reshape_dims = (0, 0, num_heads, x.shape[2] // num_heads)
    layer.second_transpose = (0, 2, 1, 3)
    return named(layer, name)


def multi_head_attention(net, weights: WeightMap, prefix: str, x, num_heads: int, query_key=None):
    """nn.MultiheadAttention(D, heads, batch_first=True)(x, x, x) on [N, L, D]: its output (the first element of the
    module's tuple), named `<prefix>`. Keys: in_proj_weight [3D, D], in_proj_bias, out_proj.weight, out_proj.bias.
    With `query_key` (a DETR's x + position embedding), queries and keys are projected from it, values from x.

    softmax(q k^T / sqrt(d)) v per head, with the 1/sqrt(d) folded into the query projection (exact for d = 64 and
    any power of four)."""
    d_model = x.shape[-1]
    if d_model % num_heads:
        raise ValueError(f"{prefix}: embedding size {d_model} does not split into {num_heads} heads")
    head_dim = d_model // num_heads
    w = weights.take(f"{prefix}.in_proj_weight", (3 * d_model, d_model))
    b = weights.take(f"{prefix}.in_proj_bias", (3 * d_model,))
    scaling = np.float32(1.0 / math.sqrt(head_dim))
    projections = {}
    for i, part in enumerate("qkv"):
        rows = slice(i * d_model, (i + 1) * d_model)
        wi, bi = (w[rows] * scaling, b[rows] * scaling) if part == "q" else (w[rows], b[rows])
        source = x if part == "v" or query_key is None else query_key
        y = linear_from_arrays(net, weights, f"{prefix}/{part}", source, np.ascontiguousarray(wi), bi)
        projections[part] = _heads(net, y, num_heads, f"{prefix}/{part}_heads")
    scores = named(net.add_matrix_multiply(projections["q"], trt.MatrixOperation.NONE, projections["k"],
                                           trt.MatrixOperation.TRANSPOSE), f"{prefix}/scores")
    softmax = net.add_softmax(scores)
    softmax.axes = 1 << 3
    attention = named(softmax, f"{prefix}/softmax")
    context = named(net.add_matrix_multiply(attention, trt.MatrixOperation.NONE, projections["v"],
                                            trt.MatrixOperation.NONE), f"{prefix}/context")
    merge = net.add_shuffle(context)  # [N, heads, L, d] -> [N, L, heads, d] -> [N, L, D]
    merge.first_transpose = (0, 2, 1, 3)
    merge.reshape_dims = (0, 0, d_model)
    merged = named(merge, f"{prefix}/merge_heads")
    out_w = weights.take(f"{prefix}.out_proj.weight", (d_model, d_model))
    out_b = weights.take(f"{prefix}.out_proj.bias", (d_model,))
    return rename(linear_from_arrays(net, weights, f"{prefix}.out_proj", merged, out_w, out_b), prefix)


def token(net, x, index: int, name: str):
    """x[:, index] of [N, L, D]: a gather with a scalar index (no build-time batch size needed)."""
    return named(net.add_gather(x, constant(net, np.array(index, np.int32), f"{name}/index"), 1), name)


def prepend_token(net, x, token_value: np.ndarray, batch_source, name: str):
    """cat([token.expand(N, 1, D), x], dim=1) for a constant token of shape [1, 1, D].

    TensorRT concatenates tensors of equal batch only, and the batch is dynamic; without shape tensors the token gets
    its batch dimension through elementwise broadcasting: a [N, 1, 1] zero made from `batch_source` (the network
    input: finite pixels, so 0 * max(x) is exactly 0) plus the [1, 1, D] token."""
    dtype = weight_dtype(x)
    rank = len(batch_source.shape)
    peak = net.add_reduce(batch_source, trt.ReduceOperation.MAX, sum(1 << a for a in range(1, rank)), False)
    shuffle = net.add_shuffle(named(peak, f"{name}/input_max"))  # [N] -> [N, 1, 1]
    shuffle.reshape_dims = (0, 1, 1)
    zero = constant(net, np.zeros((1, 1, 1), dtype), f"{name}/zero")
    zeros = named(net.add_elementwise(named(shuffle, f"{name}/per_item"), zero, trt.ElementWiseOperation.PROD),
                  f"{name}/zeros")
    value = constant(net, np.ascontiguousarray(token_value, dtype).reshape(1, 1, -1), f"{name}/value")
    broadcast = named(net.add_elementwise(zeros, value, trt.ElementWiseOperation.SUM), f"{name}/expanded")
    layer = net.add_concatenation([broadcast, x])
    layer.axis = 1
    return named(layer, name)


def attention_over_columns(net, q, k, v, scale: float, prefix: str):
    """v softmax(scale q^T k)^T for the column-major layout of YOLO's attention blocks: q, k [..., d, L] and
    v [..., dv, L] (tokens on the last axis, any leading batch axes): [..., dv, L], named `<prefix>/mixed`.

    The logits and the softmax are computed in FP32 whatever the network's type: logits rounded to FP16 (steps of 1/128
    between 8 and 16) move each exponential by up to 0.4 %, and TensorRT keeps a strongly typed network's casts. The weights, in [0, 1], go back to the network's type for the product with v."""
    dtype = q.dtype
    if dtype != trt.float32:
        q, k = cast(net, q, trt.float32, f"{prefix}/q_fp32"), cast(net, k, trt.float32, f"{prefix}/k_fp32")
    logits = named(net.add_matrix_multiply(q, trt.MatrixOperation.TRANSPOSE, k, trt.MatrixOperation.NONE),
                   f"{prefix}/qk")                                                      # [..., L, L]
    factor = constant(net, np.full((1,) * len(logits.shape), scale, np.float32), f"{prefix}/scale")
    scaled = named(net.add_elementwise(logits, factor, trt.ElementWiseOperation.PROD), f"{prefix}/logits")
    softmax = net.add_softmax(scaled)
    softmax.axes = 1 << (len(scaled.shape) - 1)
    weights = named(softmax, f"{prefix}/softmax")
    if dtype != trt.float32:
        weights = cast(net, weights, dtype, f"{prefix}/softmax_{'fp16' if dtype == trt.float16 else 'cast'}")
    return named(net.add_matrix_multiply(v, trt.MatrixOperation.NONE, weights, trt.MatrixOperation.TRANSPOSE),
                 f"{prefix}/mixed")
