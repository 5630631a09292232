"""MaxViT blocks with TensorRT layers (torchvision's MaxVit): an MBConv with a BatchNorm before it and a
squeeze-excitation inside, then block (window) attention and grid attention, each with a relative position bias.

MBConv: pre-norm BatchNorm, 1x1 conv + BN + GELU, 3x3 depthwise conv (the stride) + BN + GELU, squeeze-excitation
(SiLU, sigmoid), 1x1 conv with bias; plus the shortcut: the input, a 1x1 conv with bias when the channels change,
after a 3x3 stride-2 average pool (padding counted, as nn.AvgPool2d) when the map halves.

Partition attention on NCHW [N, C, H, W] with tile size p: the map is cut into p x p tiles by one shuffle,
[N, C, H/p, p, W/p, p] -> [N, H/p, W/p, p, p, C] -> [N, windows, p*p, C] for block attention (attention inside a
tile), or -> [N, p, p, H/p, W/p, C] -> [N, p*p, H/p * W/p, C] for grid attention (torchvision's swap of the two
middle axes: attention among the pixels p apart). Pre-norm LayerNorm, multi-head attention over axis 2 (k scaled by
C^-1/2, torchvision's factor, after the one q/k/v projection; the bias table read through the relative position index)
with a residual, then a pre-norm GELU MLP with a residual, and the inverse shuffle back to NCHW.
"""
from __future__ import annotations

import numpy as np

from wts.weight_map import WeightMap
from zoo.trt_api import trt

from .core import (activation, add, avg_pool, batch_norm, constant, conv2d, conv_bn, linear, multiply, named, rename,
                   shuffle, split, weight_dtype)
from .mobile import squeeze_excitation
from .swin import relative_position_index
from .transformer import layer_norm

BN_EPS = 1e-3  # torchvision's MaxVit: BatchNorm2d(eps=1e-3)
LN_EPS = 1e-5


def mbconv(net, weights: WeightMap, prefix: str, x, out_channels: int, stride: int):
    """torchvision's maxvit.MBConv; named `<prefix>`."""
    cin = x.shape[1]
    if stride == 2:
        shortcut = avg_pool(net, x, f"{prefix}.proj.0", 3, 2, 1, count_include_pad=True)
        shortcut = rename(conv2d(net, weights, f"{prefix}.proj.1", shortcut, out_channels, 1), f"{prefix}.proj")
    elif cin != out_channels:
        shortcut = rename(conv2d(net, weights, f"{prefix}.proj.0", x, out_channels, 1), f"{prefix}.proj")
    else:
        shortcut = x
    p = f"{prefix}.layers"
    mid = weights.count(f"{p}.conv_a.0.weight") // cin
    y = batch_norm(net, weights, f"{p}.pre_norm", x, BN_EPS)
    y = conv_bn(net, weights, f"{p}.conv_a.0", f"{p}.conv_a.1", y, mid, 1, eps=BN_EPS)
    y = activation(net, y, "gelu", f"{p}.conv_a")
    y = conv_bn(net, weights, f"{p}.conv_b.0", f"{p}.conv_b.1", y, mid, 3, stride, 1, groups=mid, eps=BN_EPS)
    y = activation(net, y, "gelu", f"{p}.conv_b")
    y = squeeze_excitation(net, weights, f"{p}.squeeze_excitation", y,
                           weights.count(f"{p}.squeeze_excitation.fc1.bias"), "silu", "sigmoid")
    y = rename(conv2d(net, weights, f"{p}.conv_c", y, out_channels, 1), p)
    return add(net, shortcut, y, prefix)


def relative_attention(net, weights: WeightMap, prefix: str, x, heads: int, partition: int):
    """RelativePositionalMultiHeadAttention on [N, G, L, C] (L = partition^2); the output (after `merge`) is
    named `<prefix>/output` for the caller to rename."""
    _, _, length, c = x.shape
    d, dtype = c // heads, weight_dtype(x)
    qkv = linear(net, weights, f"{prefix}.to_qkv", x, 3 * c)  # one projection, as the module: validated as such
    parts = dict(zip("qkv", split(net, qkv, (c, c, c), [f"{prefix}/{part}" for part in "qkv"], axis=3)))
    # torchvision scales k by C^-1/2 (the feature width, not the head width)
    parts["k"] = multiply(net, parts["k"], constant(net, np.full((1, 1, 1, 1), c ** -0.5, dtype), f"{prefix}/scale"),
                          f"{prefix}/k_scaled")
    for part in "qkv":
        parts[part] = shuffle(net, parts[part], f"{prefix}/{part}_heads", reshape=(0, 0, 0, heads, d),
                               second=(0, 1, 3, 2, 4))
    scores = named(net.add_matrix_multiply(parts["q"], trt.MatrixOperation.NONE, parts["k"],
                                           trt.MatrixOperation.TRANSPOSE), f"{prefix}/scores")
    index_key = f"{prefix}.relative_position_index"
    index = relative_position_index(partition)
    if not np.array_equal(weights.take(index_key, (length, length)).reshape(-1), index.astype(np.float32)):
        raise ValueError(f"{weights.source}: {index_key!r} is not the relative position index of a "
                         f"{partition}x{partition} partition")
    table = weights.take(f"{prefix}.relative_position_bias_table", ((2 * partition - 1) ** 2, heads))
    bias = table[index].reshape(length, length, heads).transpose(2, 0, 1)[None, None]
    scores = add(net, scores, constant(net, np.ascontiguousarray(bias, dtype), f"{prefix}/position_bias"),
                 f"{prefix}/biased_scores")
    softmax = net.add_softmax(scores)
    softmax.axes = 1 << 4
    y = named(net.add_matrix_multiply(named(softmax, f"{prefix}/softmax"), trt.MatrixOperation.NONE, parts["v"],
                                      trt.MatrixOperation.NONE), f"{prefix}/context")
    y = shuffle(net, y, f"{prefix}/merge_heads", first=(0, 1, 3, 2, 4), reshape=(0, 0, 0, c))
    return linear(net, weights, f"{prefix}.merge", y, c)


def partition_attention(net, weights: WeightMap, prefix: str, x, partition: int, heads: int, grid: bool):
    """PartitionAttentionLayer (block attention, or grid attention when `grid`) on NCHW; named `<prefix>`.
    `partition` is the attention's side (torchvision's partition_size); the tile is that for block attention and
    H / partition for grid attention."""
    _, c, h, w = x.shape
    tile = h // partition if grid else partition
    gh, gw = h // tile, w // tile
    y = shuffle(net, x, f"{prefix}/tiles", reshape=(0, c, gh, tile, gw, tile),
                 second=(0, 3, 5, 2, 4, 1) if grid else (0, 2, 4, 3, 5, 1))
    if grid:  # [N, tile, tile, gh, gw, C] -> [N, tile^2, gh*gw, C]: attention among pixels `tile` apart
        y = shuffle(net, y, f"{prefix}.partition_swap", reshape=(0, tile * tile, gh * gw, c))
    else:
        y = shuffle(net, y, f"{prefix}.partition_op", reshape=(0, gh * gw, tile * tile, c))
    a = layer_norm(net, weights, f"{prefix}.attn_layer.0", y, LN_EPS)
    a = rename(relative_attention(net, weights, f"{prefix}.attn_layer.1", a, heads, partition),
               f"{prefix}.attn_layer")
    y = add(net, y, a, f"{prefix}/attention_residual")
    m = layer_norm(net, weights, f"{prefix}.mlp_layer.0", y, LN_EPS)
    hidden = weights.count(f"{prefix}.mlp_layer.1.bias")
    m = activation(net, linear(net, weights, f"{prefix}.mlp_layer.1", m, hidden), "gelu", f"{prefix}.mlp_layer.2")
    m = rename(linear(net, weights, f"{prefix}.mlp_layer.3", m, c), f"{prefix}.mlp_layer")
    y = add(net, y, m, f"{prefix}/mlp_residual")
    if grid:  # [N, tile^2, gh*gw, C] -> [N, tile, tile, gh, gw, C] -> [N, C, gh, tile, gw, tile]
        y = shuffle(net, y, f"{prefix}/untiles", reshape=(0, tile, tile, gh, gw, c), second=(0, 5, 3, 1, 4, 2))
    else:  # [N, gh*gw, tile^2, C] -> [N, gh, gw, tile, tile, C] -> [N, C, gh, tile, gw, tile]
        y = shuffle(net, y, f"{prefix}/untiles", reshape=(0, gh, gw, tile, tile, c), second=(0, 5, 1, 3, 2, 4))
    return shuffle(net, y, prefix, reshape=(0, c, h, w))


def maxvit_layer(net, weights: WeightMap, prefix: str, x, out_channels: int, stride: int, partition: int,
                 heads: int):
    """MaxVitLayer: MBConv, block attention, grid attention; named `<prefix>`."""
    p = f"{prefix}.layers"
    y = mbconv(net, weights, f"{p}.MBconv", x, out_channels, stride)
    y = partition_attention(net, weights, f"{p}.window_attention", y, partition, heads, grid=False)
    y = partition_attention(net, weights, f"{p}.grid_attention", y, partition, heads, grid=True)
    return rename(y, prefix)
