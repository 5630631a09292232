"""C2PSA with its PSABlock and Attention (YOLO11 layer 10; upstream `nn/modules/block.py`): multi-head
self-attention over the H*W positions, written on the network as matrix multiplies. head_dim = c / heads,
key_dim = head_dim * attn_ratio, scale key_dim^-0.5; qkv (B, heads, 2 key_dim + head_dim, N) split along axis 2;
out = v softmax(q^T k scale)^T, plus a depthwise 3x3 `pe` of v, then `proj`. PSABlock: x + attn(x), then + ffn."""
from __future__ import annotations

import numpy as np
import torch
from torch import nn

import layers
from zoo.trt_api import trt
from zoo.yolo.registry import Block, TableError, register, scaled

from .conv import Conv, conv


class Attention(nn.Module):
    def __init__(self, dim: int, num_heads: int = 8, attn_ratio: float = 0.5):
        super().__init__()
        self.num_heads = num_heads
        self.head_dim = dim // num_heads
        self.key_dim = int(self.head_dim * attn_ratio)
        self.scale = self.key_dim ** -0.5
        self.qkv = Conv(dim, dim + 2 * self.key_dim * num_heads, 1, act=False)
        self.proj = Conv(dim, dim, 1, act=False)
        self.pe = Conv(dim, dim, 3, g=dim, act=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, c, h, w = x.shape
        n = h * w
        qkv = self.qkv(x).view(b, self.num_heads, 2 * self.key_dim + self.head_dim, n)
        q, k, v = qkv.split((self.key_dim, self.key_dim, self.head_dim), dim=2)
        attn = ((q.transpose(-2, -1) @ k) * self.scale).softmax(dim=-1)               # (b, heads, n, n)
        y = (v @ attn.transpose(-2, -1)).view(b, c, h, w) + self.pe(v.reshape(b, c, h, w))
        return self.proj(y)


def attention(net, weights, prefix: str, x, dim: int, num_heads: int = 8, attn_ratio: float = 0.5):
    _, c, h, w = x.shape
    n = h * w
    head_dim = c // num_heads
    key_dim = int(head_dim * attn_ratio)
    qkv = conv(net, weights, f"{prefix}.qkv", x, c, c + 2 * key_dim * num_heads, 1, act=False)
    qkv = layers.reshape(net, qkv, (0, num_heads, 2 * key_dim + head_dim, n), f"{prefix}/view")
    q, k, v = layers.split(net, qkv, (key_dim, key_dim, head_dim), (f"{prefix}/q", f"{prefix}/k", f"{prefix}/v"),
                           axis=2)
    scores = layers.named(net.add_matrix_multiply(q, trt.MatrixOperation.TRANSPOSE, k, trt.MatrixOperation.NONE),
                          f"{prefix}/qk")                                                # (B, heads, N, N)
    scale = layers.constant(net, np.full((1, 1, 1, 1), key_dim ** -0.5, layers.weight_dtype(x)), f"{prefix}/scale")
    attn = layers.softmax(net, layers.multiply(net, scores, scale, f"{prefix}/scaled"), f"{prefix}/softmax", axis=3)
    out = layers.named(net.add_matrix_multiply(v, trt.MatrixOperation.NONE, attn, trt.MatrixOperation.TRANSPOSE),
                       f"{prefix}/av")                                                   # (B, heads, head_dim, N)
    out = layers.reshape(net, out, (0, c, h, w), f"{prefix}/merge")
    v_image = layers.reshape(net, v, (0, c, h, w), f"{prefix}/v_image")
    pe = conv(net, weights, f"{prefix}.pe", v_image, c, c, 3, g=c, act=False)
    y = layers.add(net, out, pe, f"{prefix}/add_pe")
    return layers.rename(conv(net, weights, f"{prefix}.proj", y, c, c, 1, act=False), prefix)


class PSABlock(nn.Module):
    def __init__(self, c: int, attn_ratio: float = 0.5, num_heads: int = 4, shortcut: bool = True):
        super().__init__()
        self.attn = Attention(c, num_heads, attn_ratio)
        self.ffn = nn.Sequential(Conv(c, 2 * c, 1), Conv(2 * c, c, 1, act=False))
        self.add = shortcut

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x + self.attn(x) if self.add else self.attn(x)
        return x + self.ffn(x) if self.add else self.ffn(x)


def psa_block(net, weights, prefix: str, x, c: int, attn_ratio: float = 0.5, num_heads: int = 4,
              shortcut: bool = True, out_name: str | None = None):
    """attention then feed-forward, each with its shortcut; the output is named `out_name` (default `prefix`,
    the block's own name; YOLOv10's PSA, whose attention and ffn sit in the module itself, names it apart)."""
    a = attention(net, weights, f"{prefix}.attn", x, c, num_heads, attn_ratio)
    x = layers.add(net, x, a, f"{prefix}/add_attn") if shortcut else a
    y = conv(net, weights, f"{prefix}.ffn.0", x, c, 2 * c, 1)
    y = layers.rename(conv(net, weights, f"{prefix}.ffn.1", y, 2 * c, c, 1, act=False), f"{prefix}.ffn")
    out_name = out_name or prefix
    return layers.add(net, x, y, out_name) if shortcut else layers.rename(y, out_name)


def split_attend_merge(net, weights, prefix: str, x, c1: int, c: int, middle):
    """The frame C2PSA and YOLOv10's PSA share: cv1 to 2c channels, split in halves, `middle` on the second half,
    concat, cv2 back to c1 channels (named `prefix`)."""
    y = conv(net, weights, f"{prefix}.cv1", x, c1, 2 * c, 1)
    a, b = layers.split(net, y, (c, c), (f"{prefix}/split0", f"{prefix}/split1"))
    cat = layers.concat(net, [a, middle(b)], f"{prefix}/concat")
    return layers.rename(conv(net, weights, f"{prefix}.cv2", cat, 2 * c, c1, 1), prefix)


class C2PSA(nn.Module):
    def __init__(self, c1: int, c2: int, n: int = 1, e: float = 0.5):
        super().__init__()
        self.c = int(c1 * e)
        self.cv1 = Conv(c1, 2 * self.c, 1)
        self.cv2 = Conv(2 * self.c, c1, 1)
        self.m = nn.Sequential(*(PSABlock(self.c, attn_ratio=0.5, num_heads=self.c // 64) for _ in range(n)))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        a, b = self.cv1(x).split((self.c, self.c), 1)
        return self.cv2(torch.cat((a, self.m(b)), 1))


def c2psa(net, weights, prefix: str, x, c1: int, c2: int, n: int = 1, e: float = 0.5):
    c = int(c1 * e)

    def blocks(b):
        for i in range(n):
            b = psa_block(net, weights, f"{prefix}.m.{i}", b, c, 0.5, c // 64)
        return layers.rename(b, f"{prefix}.m") if n else b

    return split_attend_merge(net, weights, prefix, x, c1, c, blocks)


def c2psa_resolve(row):
    args, c2 = scaled(row)
    if args[0] != c2:
        raise TableError(f"{row.where()}: C2PSA keeps its channels, but its input has {args[0]} and it asks {c2}")
    if int(c2 * (args[2] if len(args) > 2 else 0.5)) < 64:
        raise TableError(f"{row.where()}: C2PSA needs at least 64 hidden channels (one attention head)")
    return args, c2


register(Block("C2PSA", C2PSA, c2psa, resolve=c2psa_resolve, repeats=True))
