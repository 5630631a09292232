"""AIFI: RT-DETR's transformer encoder layer over the top feature map (facts: docs/rtdetr.md, upstream
`nn/modules/transformer.py`). The map (B, C, H, W) becomes H*W tokens (row-major), a post-norm encoder layer runs
over them with a fixed 2-D sin-cos position embedding added to the queries and keys (not the values), and the
tokens go back to (B, C, H, W):
    src = norm1(src + ma(src + pos, src + pos, src));  src = norm2(src + fc2(gelu(fc1(src))))
The embedding of an H x W map, C channels, d = C / 4, omega_i = 1 / 10000^(i / d):
    [sin(y omega), cos(y omega), sin(x omega), cos(x omega)] for the token at row y, column x (FP32, then the
    network's type). On the network it is a constant for the engine's input size.
Table row: [cm, num_heads] (feed-forward width, heads); the input's channels come first.
"""
from __future__ import annotations

import torch
from torch import nn

import layers
from layers.core import shuffle as core_shuffle
from layers.transformer import layer_norm, multi_head_attention
from zoo.yolo.registry import Block, TableError, register


def sincos_position_embedding(h: int, w: int, dim: int, temperature: float = 10000.0) -> torch.Tensor:
    """(1, h*w, dim) FP32."""
    if dim % 4:
        raise TableError(f"AIFI: the 2-D sin-cos position embedding needs channels divisible by 4, got {dim}")
    grid_h, grid_w = torch.meshgrid(torch.arange(h, dtype=torch.float32), torch.arange(w, dtype=torch.float32),
                                    indexing="ij")
    d = dim // 4
    omega = 1.0 / temperature ** (torch.arange(d, dtype=torch.float32) / d)
    out_w = grid_w.flatten()[:, None] @ omega[None]
    out_h = grid_h.flatten()[:, None] @ omega[None]
    return torch.cat([out_h.sin(), out_h.cos(), out_w.sin(), out_w.cos()], 1)[None]


class AIFI(nn.Module):
    def __init__(self, c1: int, cm: int = 2048, num_heads: int = 8):
        super().__init__()
        self.ma = nn.MultiheadAttention(c1, num_heads, batch_first=True)
        self.fc1 = nn.Linear(c1, cm)
        self.fc2 = nn.Linear(cm, c1)
        self.norm1 = nn.LayerNorm(c1)
        self.norm2 = nn.LayerNorm(c1)
        self.act = nn.GELU()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        c, h, w = x.shape[1:]
        src = x.flatten(2).permute(0, 2, 1)
        q = src + sincos_position_embedding(h, w, c).to(x.device, x.dtype)
        src = self.norm1(src + self.ma(q, q, src)[0])
        src = self.norm2(src + self.fc2(self.act(self.fc1(src))))
        return src.permute(0, 2, 1).reshape(-1, c, h, w)


def aifi(net, weights, prefix: str, x, c1: int, cm: int = 2048, num_heads: int = 8):
    _, c, h, w = x.shape
    dtype = layers.weight_dtype(x)
    src = core_shuffle(net, x, f"{prefix}/tokens", reshape=(0, c, h * w), second=(0, 2, 1))
    pos = layers.constant(net, sincos_position_embedding(h, w, c).numpy().astype(dtype), f"{prefix}/pos_embed")
    q = layers.add(net, src, pos, f"{prefix}/with_pos")
    attn = multi_head_attention(net, weights, f"{prefix}.ma", src, num_heads, query_key=q)
    src = layer_norm(net, weights, f"{prefix}.norm1", layers.add(net, src, attn, f"{prefix}/add1"))
    y = layers.activation(net, layers.linear(net, weights, f"{prefix}.fc1", src, cm), "gelu", f"{prefix}.act")
    y = layers.linear(net, weights, f"{prefix}.fc2", y, c1)
    src = layer_norm(net, weights, f"{prefix}.norm2", layers.add(net, src, y, f"{prefix}/add2"))
    return core_shuffle(net, src, prefix, first=(0, 2, 1), reshape=(0, c, h, w))


def aifi_resolve(row) -> tuple[list, int]:
    """[cm, heads] -> (c1, cm, heads); channels unchanged."""
    if not row.args or not all(isinstance(a, int) and a > 0 for a in row.args[:2]):
        raise TableError(f"{row.where()}: AIFI takes [feed-forward width, heads], got {row.args!r}")
    if len(row.args) > 2 and any(row.args[2:4]):
        raise TableError(f"{row.where()}: AIFI with dropout or another activation is not supported ({row.args!r})")
    if row.inputs[0] % row.args[1] if len(row.args) > 1 else False:
        raise TableError(f"{row.where()}: {row.inputs[0]} channels do not split into {row.args[1]} heads")
    return [row.inputs[0], *row.args[:2]], row.inputs[0]


register(Block("AIFI", AIFI, aifi, resolve=aifi_resolve))
