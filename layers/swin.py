"""Swin Transformer blocks (V1 and V2) with TensorRT layers, on channels-last maps [N, H, W, C].

Window attention: the map is zero-padded at the bottom/right to a multiple of the window w and, in every other
block, rolled by -w/2 along H and W (torch.roll); both are one gather per axis with constant indices (an index of a
padded position reads row 0 and is then multiplied by 0), which also keeps the dynamic batch out of any slice.
Windows are cut out by a shuffle ([N, H/w, w, W/w, w, C] -> [N * windows, w * w, C]), attention runs per window
and head with the position bias (and, for shifted windows, the mask that keeps tokens from opposite borders apart:
-100 where the regions differ, as torchvision) added before the softmax, and the inverse shuffle and gathers put
the map back, unrolled and unpadded. V1 scales q by d^-1/2 (folded into its projection); V2 normalizes q and k
(x / max(|x|, 1e-12)), multiplies by exp(min(logit_scale, log 100)) per head and zeroes the key bias. V1's position
bias is its table read through the relative position index (a weight rearrangement, done here); V2's is
16 * sigmoid of an MLP (2 -> 512 -> heads) on the log-spaced offsets, built as layers so that validation sees it.

Patch merging: the four pixels of each 2x2 cell side by side in the order (0,0), (1,0), (0,1), (1,1), which is one
shuffle ([N, H/2, 2, W/2, 2, C] -> [N, H/2, W/2, 2(w), 2(h), C] -> [N, H/2, W/2, 4C]).
"""
from __future__ import annotations

import math

import numpy as np

from wts.weight_map import WeightMap
from zoo.trt_api import trt

from .core import activation, add, constant, linear, linear_from_arrays, multiply, named, rename, shuffle, weight_dtype
from .transformer import layer_norm

MASKED = -100.0  # torchvision's value for token pairs of different regions of a shifted window
CPB_HIDDEN = 512


# ---------------------------------------------------------------------------------------------------------------
# constants of the architecture (numpy; the PyTorch reference modules use the same)


def relative_position_index(window: int) -> np.ndarray:
    """[w^4] int64: for tokens a = (ya, xa), b = (yb, xb) of a window (row-major), the row of the bias table of
    the offset a - b: (ya - yb + w - 1) * (2w - 1) + (xa - xb + w - 1), flattened over (a, b)."""
    y, x = np.divmod(np.arange(window * window), window)
    dy = y[:, None] - y[None, :] + window - 1
    dx = x[:, None] - x[None, :] + window - 1
    return (dy * (2 * window - 1) + dx).reshape(-1).astype(np.int64)


def log_spaced_coordinates(window: int) -> np.ndarray:
    """[1, 2w-1, 2w-1, 2] float32: every offset (dy, dx) scaled to -8..8, then sign(t) * log2(1 + |t|) / 3."""
    offsets = np.arange(-(window - 1), window, dtype=np.float32)
    grid = np.stack(np.meshgrid(offsets, offsets, indexing="ij"), axis=-1)[None]
    scaled = grid / np.float32(window - 1) * np.float32(8)
    return (np.sign(scaled) * np.log2(np.abs(scaled) + np.float32(1)) / np.float32(3)).astype(np.float32)


def shift_mask(height: int, width: int, window: int, shift: tuple[int, int]) -> np.ndarray:
    """[windows, w*w, w*w] float32: 0 where two tokens of a window came from the same region of the rolled map,
    MASKED elsewhere. Regions along an axis of size n rolled by s: [0, n - w), [n - w, n - s), [n - s, n)."""
    def regions(n, s):
        label = np.zeros(n, np.int64)
        label[n - window:] = 1
        if s:
            label[n - s:] = 2
        return label
    labels = regions(height, shift[0])[:, None] * 3 + regions(width, shift[1])[None, :]
    windows = labels.reshape(height // window, window, width // window, window).transpose(0, 2, 1, 3)
    windows = windows.reshape(-1, window * window)
    return np.where(windows[:, :, None] == windows[:, None, :], 0.0, MASKED).astype(np.float32)


def window_from_weights(weights: WeightMap, prefix: str, v2: bool) -> int:
    """The window w of an attention module from its buffers' value counts: V1's index holds w^4 entries, V2's
    coordinate table (2w - 1)^2 x 2."""
    if v2:
        key = f"{prefix}.relative_coords_table"
        side = math.isqrt(weights.count(key) // 2)
        window = (side + 1) // 2
        ok = 2 * (2 * window - 1) ** 2 == weights.count(key) and window > 1
    else:
        key = f"{prefix}.relative_position_index"
        window = round(weights.count(key) ** 0.25)
        ok = window ** 4 == weights.count(key) and window > 1
    if not ok:
        raise ValueError(f"{weights.source}: {key!r} has {weights.count(key)} values, which fit no square window")
    return window


# ---------------------------------------------------------------------------------------------------------------
# layers


def gather_positions(net, x, axis: int, sources, name: str):
    """out[..., i, ...] = x[..., sources[i], ...] along `axis`, and 0 where sources[i] is -1 (padding)."""
    sources = np.asarray(sources, np.int64)
    out = named(net.add_gather(x, constant(net, np.maximum(sources, 0).astype(np.int32), f"{name}/indices"), axis),
                name if (sources >= 0).all() else f"{name}/gather")
    if (sources >= 0).all():
        return out
    shape = [1] * len(x.shape)
    shape[axis] = len(sources)
    keep = constant(net, (sources >= 0).astype(weight_dtype(x)).reshape(shape), f"{name}/keep")
    return multiply(net, out, keep, name)


def l2_normalize(net, x, name: str, eps: float = 1e-12):
    """F.normalize(x, dim=-1): x / max(sqrt(sum x^2), eps)."""
    rank = len(x.shape)
    squares = multiply(net, x, x, f"{name}/squares")
    total = named(net.add_reduce(squares, trt.ReduceOperation.SUM, 1 << (rank - 1), True), f"{name}/sum")
    norm = named(net.add_unary(total, trt.UnaryOperation.SQRT), f"{name}/norm")
    # in FP16 1e-12 rounds to 0 and an all-zero vector (a padded token's key, whose bias V2 zeroes) would give 0/0:
    # the floor is the smallest positive FP16 value there, which keeps 0 / floor = 0 as in FP32
    dtype = weight_dtype(x)
    floor = constant(net, np.full((1,) * rank, max(eps, float(np.finfo(dtype).smallest_subnormal)), dtype),
                     f"{name}/eps")
    norm = named(net.add_elementwise(norm, floor, trt.ElementWiseOperation.MAX), f"{name}/clamped")
    return named(net.add_elementwise(x, norm, trt.ElementWiseOperation.DIV), name)


def _v1_position_bias(weights: WeightMap, prefix: str, window: int, heads: int, dtype) -> np.ndarray:
    """[1, heads, L, L] from the table [(2w-1)^2, heads] and the index (checked against the window's)."""
    _check_index(weights, prefix, window)
    table = weights.take(f"{prefix}.relative_position_bias_table", ((2 * window - 1) ** 2, heads))
    length = window * window
    bias = table[relative_position_index(window)].reshape(length, length, heads).transpose(2, 0, 1)
    return np.ascontiguousarray(bias[None], dtype)


def _check_index(weights: WeightMap, prefix: str, window: int) -> None:
    key = f"{prefix}.relative_position_index"
    if not np.array_equal(weights.take(key, (window ** 4,)), relative_position_index(window).astype(np.float32)):
        raise ValueError(f"{weights.source}: {key!r} is not the relative position index of a {window}x{window} window")


def _v2_position_bias(net, weights: WeightMap, prefix: str, window: int, heads: int, dtype):
    """16 * sigmoid(cpb_mlp(coordinates)) read through the index, [1, heads, L, L], as layers."""
    _check_index(weights, prefix, window)
    key, side = f"{prefix}.relative_coords_table", 2 * window - 1
    coordinates = weights.take(key, (1, side, side, 2))
    if not np.allclose(coordinates, log_spaced_coordinates(window), rtol=1e-5, atol=1e-6):
        raise ValueError(f"{weights.source}: {key!r} is not the log-spaced offset table of a {window}x{window} "
                         f"window")
    y = constant(net, coordinates.astype(dtype), key)
    y = activation(net, linear(net, weights, f"{prefix}.cpb_mlp.0", y, CPB_HIDDEN), "relu", f"{prefix}.cpb_mlp.1")
    y = rename(linear(net, weights, f"{prefix}.cpb_mlp.2", y, heads, bias=False), f"{prefix}.cpb_mlp")
    table = shuffle(net, y, f"{prefix}/bias_table", reshape=(side * side, heads))
    length = window * window
    index = constant(net, relative_position_index(window).astype(np.int32), f"{prefix}/bias_index")
    bias = named(net.add_gather(table, index, 0), f"{prefix}/bias_gather")              # [L*L, heads]
    bias = shuffle(net, bias, f"{prefix}/bias_layout", reshape=(1, length, length, heads), second=(0, 3, 1, 2))
    bias = activation(net, bias, "sigmoid", f"{prefix}/bias_sigmoid")
    return multiply(net, bias, constant(net, np.full((1, 1, 1, 1), 16, dtype), f"{prefix}/sixteen"),
                    f"{prefix}/position_bias")


def window_attention(net, weights: WeightMap, prefix: str, x, heads: int, window: int, shift: int, v2: bool):
    """torchvision's ShiftedWindowAttention (V2) on [N, H, W, C]; the output is named `<prefix>`."""
    _, h, w, c = x.shape
    dtype, d, length = weight_dtype(x), c // heads, window * window
    hp, wp = h + (-h % window), w + (-w % window)
    sh, sw = (shift if window < hp else 0), (shift if window < wp else 0)
    y = x
    if (hp, sh) != (h, 0):
        y = gather_positions(net, y, 1, [(i + sh) % hp if (i + sh) % hp < h else -1 for i in range(hp)],
                             f"{prefix}/roll_pad_h")
    if (wp, sw) != (w, 0):
        y = gather_positions(net, y, 2, [(i + sw) % wp if (i + sw) % wp < w else -1 for i in range(wp)],
                             f"{prefix}/roll_pad_w")
    y = shuffle(net, y, f"{prefix}/partition", reshape=(0, hp // window, window, wp // window, window, c),
                 second=(0, 1, 3, 2, 4, 5))
    tokens = shuffle(net, y, f"{prefix}/windows", reshape=(-1, length, c))
    qkv_w = weights.take(f"{prefix}.qkv.weight", (3 * c, c))
    qkv_b = weights.take(f"{prefix}.qkv.bias", (3 * c,))
    parts = {}
    for i, part in enumerate("qkv"):
        wi, bi = qkv_w[i * c:(i + 1) * c], qkv_b[i * c:(i + 1) * c]
        if part == "q" and not v2:  # V1 scales q: folded into its projection
            wi, bi = wi * np.float32(d ** -0.5), bi * np.float32(d ** -0.5)
        if part == "k" and v2:  # V2 ignores the key's bias
            bi = np.zeros_like(bi)
        y = linear_from_arrays(net, weights, f"{prefix}/{part}", tokens, np.ascontiguousarray(wi), bi)
        y = shuffle(net, y, f"{prefix}/{part}_heads", reshape=(0, 0, heads, d), second=(0, 2, 1, 3))
        parts[part] = l2_normalize(net, y, f"{prefix}/{part}_normalized") if v2 and part != "v" else y
    scores = named(net.add_matrix_multiply(parts["q"], trt.MatrixOperation.NONE, parts["k"],
                                           trt.MatrixOperation.TRANSPOSE), f"{prefix}/scores")
    if v2:
        logit = weights.take(f"{prefix}.logit_scale", (heads, 1, 1))
        scale = np.exp(np.minimum(logit, np.float32(math.log(100.0)))).reshape(1, heads, 1, 1)
        scores = multiply(net, scores, constant(net, scale.astype(dtype), f"{prefix}/logit_scale"),
                          f"{prefix}/scaled_scores")
        bias = _v2_position_bias(net, weights, prefix, window, heads, dtype)
    else:
        bias = constant(net, _v1_position_bias(weights, prefix, window, heads, dtype), f"{prefix}/position_bias")
    scores = add(net, scores, bias, f"{prefix}/biased_scores")
    if sh or sw:
        windows = (hp // window) * (wp // window)
        mask = shift_mask(hp, wp, window, (sh, sw)).reshape(1, windows, 1, length, length).astype(dtype)
        y = shuffle(net, scores, f"{prefix}/scores_per_window", reshape=(-1, windows, heads, length, length))
        y = add(net, y, constant(net, mask, f"{prefix}/shift_mask"), f"{prefix}/masked_scores")
        scores = shuffle(net, y, f"{prefix}/masked_scores_per_head", reshape=(-1, heads, length, length))
    softmax = net.add_softmax(scores)
    softmax.axes = 1 << 3
    attention = named(softmax, f"{prefix}/softmax")
    y = named(net.add_matrix_multiply(attention, trt.MatrixOperation.NONE, parts["v"], trt.MatrixOperation.NONE),
              f"{prefix}/context")
    y = shuffle(net, y, f"{prefix}/merge_heads", first=(0, 2, 1, 3), reshape=(0, 0, c))
    y = linear(net, weights, f"{prefix}.proj", y, c)
    y = shuffle(net, y, f"{prefix}/unpartition", reshape=(-1, hp // window, wp // window, window, window, c),
                 second=(0, 1, 3, 2, 4, 5))
    y = shuffle(net, y, f"{prefix}/map", reshape=(0, hp, wp, c))
    if (hp, sh) != (h, 0):
        y = gather_positions(net, y, 1, [(i - sh) % hp for i in range(h)], f"{prefix}/unroll_h")
    if (wp, sw) != (w, 0):
        y = gather_positions(net, y, 2, [(i - sw) % wp for i in range(w)], f"{prefix}/unroll_w")
    return rename(y, prefix)


def mlp(net, weights: WeightMap, prefix: str, x):
    """torchvision.ops.MLP(C, [hidden, C], GELU): Linear, GELU (erf), Linear; named `<prefix>`."""
    c, hidden = x.shape[-1], weights.count(f"{prefix}.0.bias")
    y = activation(net, linear(net, weights, f"{prefix}.0", x, hidden), "gelu", f"{prefix}.1")
    return rename(linear(net, weights, f"{prefix}.3", y, c), prefix)


def block(net, weights: WeightMap, prefix: str, x, heads: int, window: int, shift: int, v2: bool, eps: float):
    """SwinTransformerBlock: V1 x + attn(norm1(x)), then x + mlp(norm2(x)); V2 (post-norm) x + norm1(attn(x)),
    then x + norm2(mlp(x)). Stochastic depth is the identity in eval."""
    if v2:
        y = window_attention(net, weights, f"{prefix}.attn", x, heads, window, shift, True)
        x = add(net, x, layer_norm(net, weights, f"{prefix}.norm1", y, eps), f"{prefix}/attention_residual")
        y = mlp(net, weights, f"{prefix}.mlp", x)
        return add(net, x, layer_norm(net, weights, f"{prefix}.norm2", y, eps), prefix)
    y = window_attention(net, weights, f"{prefix}.attn", layer_norm(net, weights, f"{prefix}.norm1", x, eps), heads,
                         window, shift, False)
    x = add(net, x, y, f"{prefix}/attention_residual")
    return add(net, x, mlp(net, weights, f"{prefix}.mlp", layer_norm(net, weights, f"{prefix}.norm2", x, eps)),
               prefix)


def patch_merging(net, weights: WeightMap, prefix: str, x, v2: bool, eps: float):
    """PatchMerging (V1: norm(4C), then reduction to 2C) or PatchMergingV2 (reduction, then norm(2C)) on
    [N, H, W, C] with H and W even; named `<prefix>`."""
    _, h, w, c = x.shape
    if h % 2 or w % 2:
        raise ValueError(f"{prefix}: patch merging of an odd {h}x{w} map (the input size must be a multiple of 32)")
    y = shuffle(net, x, f"{prefix}/cells", reshape=(0, h // 2, 2, w // 2, 2, c), second=(0, 1, 3, 4, 2, 5))
    y = shuffle(net, y, f"{prefix}/merge", reshape=(0, h // 2, w // 2, 4 * c))
    if v2:
        y = linear(net, weights, f"{prefix}.reduction", y, 2 * c, bias=False)
        return rename(layer_norm(net, weights, f"{prefix}.norm", y, eps), prefix)
    y = layer_norm(net, weights, f"{prefix}.norm", y, eps)
    return rename(linear(net, weights, f"{prefix}.reduction", y, 2 * c, bias=False), prefix)
