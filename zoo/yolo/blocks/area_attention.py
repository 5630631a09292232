"""YOLO12's area attention: A2C2f, its ABlock and AAttn (facts in docs/yolo12.md, read from ultralytics 8.4.190
`nn/modules/block.py` and `nn/tasks.py`).

AAttn(dim, heads, area): a 1x1 `qkv` Conv (no activation) to 3 * heads * 32 channels, laid out per head as
[q | k | v] (32 each); the H*W positions, in row-major order, cut into `area` runs of N / area consecutive positions;
inside each run and head, out = v softmax(q^T k / sqrt(head_dim))^T; plus `pe`, a depthwise 7x7 Conv of v; then a 1x1
`proj` Conv. ABlock: x + attn(x), then + mlp(x) (two 1x1 Convs, the second without activation). A2C2f: C2f's layout
with a single-piece cv1, each inner block two ABlocks (a2) or a C3k(c_, c_, 2), and at scales l and x a residual
x + gamma * y with a learnt per-channel gamma.

The reference module follows the upstream arithmetic (runs folded into the batch, token-major); the network keeps
the runs as their own axis (B, area, heads, 32, N / area) so that the batch stays dynamic: two independent
readings of the same indexing, held equal by tests/test_yolo12.py."""
from __future__ import annotations

import torch
from torch import nn

import layers
from layers.core import shuffle
from zoo.yolo.registry import Block, TableError, register, scaled

from .conv import Conv, conv
from .csp import C3k, c3k

HEAD_DIM = 32  # A2C2f gives each ABlock c_ // 32 heads, so every head is 32 channels wide


class AAttn(nn.Module):
    def __init__(self, dim: int, num_heads: int, area: int = 1):
        super().__init__()
        self.area, self.num_heads = area, num_heads
        self.head_dim = dim // num_heads
        self.all_head_dim = self.head_dim * num_heads
        self.qkv = Conv(dim, 3 * self.all_head_dim, 1, act=False)
        self.proj = Conv(self.all_head_dim, dim, 1, act=False)
        self.pe = Conv(self.all_head_dim, self.all_head_dim, 7, 1, 3, g=self.all_head_dim, act=False)

    def split(self, qkv: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """qkv's output (b, 3c, h, w) as q, k, v of shape (b * area, heads, 32, n / area)."""
        b, _, h, w = qkv.shape
        n = h * w
        if n % self.area:
            raise ValueError(f"{h}x{w} positions do not split into {self.area} areas")
        tokens = qkv.flatten(2).transpose(1, 2)                                  # (b, n, 3c), position-major
        runs = tokens.reshape(b * self.area, n // self.area, self.num_heads, 3 * self.head_dim)
        return runs.permute(0, 2, 3, 1).split(self.head_dim, dim=2)

    def logits(self, q: torch.Tensor, k: torch.Tensor) -> torch.Tensor:
        return (q * self.head_dim ** -0.5).transpose(-2, -1) @ k

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, _, h, w = x.shape
        n, c = h * w, self.all_head_dim
        q, k, v = self.split(self.qkv(x))
        mixed = v @ self.logits(q, k).softmax(dim=-1).transpose(-2, -1)

        def image(t):  # (b*area, heads, 32, n/area) -> (b, c, h, w)
            return t.permute(0, 3, 1, 2).reshape(b, n, c).transpose(1, 2).reshape(b, c, h, w)

        return self.proj(image(mixed) + self.pe(image(v)))


def area_attention(net, weights, prefix: str, x, dim: int, num_heads: int, area: int = 1):
    _, _, h, w = x.shape
    n, head_dim = h * w, dim // num_heads
    c = head_dim * num_heads
    if n % area:
        raise TableError(f"{prefix}: area attention cuts the {h}x{w} = {n} positions of this level into {area} "
                         f"areas, which needs {n} divisible by {area}: choose another input size")
    qkv = conv(net, weights, f"{prefix}.qkv", x, dim, 3 * c, 1, act=False)
    # channel = head * 96 + part * 32 + d and position = run * (n / area) + t, so one reshape names the five axes
    runs = shuffle(net, qkv, f"{prefix}/areas", reshape=(0, num_heads, 3 * head_dim, area, n // area),
                   second=(0, 3, 1, 2, 4))                                        # (B, area, heads, 96, n / area)
    q, k, v = layers.split(net, runs, (head_dim,) * 3, (f"{prefix}/q", f"{prefix}/k", f"{prefix}/v"), axis=3)
    mixed = layers.attention_over_columns(net, q, k, v, head_dim ** -0.5, prefix)

    def image(t, name):  # (B, area, heads, 32, n / area) -> (B, c, h, w)
        return shuffle(net, t, name, first=(0, 2, 3, 1, 4), reshape=(0, c, h, w))

    pe = conv(net, weights, f"{prefix}.pe", image(v, f"{prefix}/v_image"), c, c, 7, 1, 3, g=c, act=False)
    y = layers.add(net, image(mixed, f"{prefix}/merge"), pe, f"{prefix}/add_pe")
    return layers.rename(conv(net, weights, f"{prefix}.proj", y, c, dim, 1, act=False), prefix)


class ABlock(nn.Module):
    def __init__(self, dim: int, num_heads: int, mlp_ratio: float = 1.2, area: int = 1):
        super().__init__()
        hidden = int(dim * mlp_ratio)
        self.attn = AAttn(dim, num_heads, area)
        self.mlp = nn.Sequential(Conv(dim, hidden, 1), Conv(hidden, dim, 1, act=False))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x + self.attn(x)
        return x + self.mlp(x)


def area_block(net, weights, prefix: str, x, dim: int, num_heads: int, mlp_ratio: float = 1.2, area: int = 1):
    hidden = int(dim * mlp_ratio)
    x = layers.add(net, x, area_attention(net, weights, f"{prefix}.attn", x, dim, num_heads, area),
                   f"{prefix}/add_attn")
    y = conv(net, weights, f"{prefix}.mlp.0", x, dim, hidden, 1)
    y = layers.rename(conv(net, weights, f"{prefix}.mlp.1", y, hidden, dim, 1, act=False), f"{prefix}.mlp")
    return layers.add(net, x, y, prefix)


def _hidden(c2: int, e: float, where: str) -> int:
    c_ = int(c2 * e)
    if c_ % HEAD_DIM or not c_:
        raise TableError(f"{where}: A2C2f's hidden width int({c2} x {e}) = {c_} must be a positive multiple of "
                         f"{HEAD_DIM} (one attention head each)")
    return c_


class A2C2f(nn.Module):
    def __init__(self, c1: int, c2: int, n: int = 1, a2: bool = True, area: int = 1, residual: bool = False,
                 mlp_ratio: float = 2.0, e: float = 0.5, g: int = 1, shortcut: bool = True):
        super().__init__()
        c_ = _hidden(c2, e, "A2C2f")
        self.cv1 = Conv(c1, c_, 1)
        self.cv2 = Conv((1 + n) * c_, c2, 1)
        self.gamma = nn.Parameter(torch.full((c2,), 0.01)) if a2 and residual else None
        self.m = nn.ModuleList(
            nn.Sequential(*(ABlock(c_, c_ // HEAD_DIM, mlp_ratio, area) for _ in range(2))) if a2
            else C3k(c_, c_, 2, shortcut, g) for _ in range(n))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        pieces = [self.cv1(x)]
        for m in self.m:
            pieces.append(m(pieces[-1]))
        y = self.cv2(torch.cat(pieces, 1))
        return y if self.gamma is None else x + self.gamma.view(1, -1, 1, 1) * y


def a2c2f(net, weights, prefix: str, x, c1: int, c2: int, n: int = 1, a2: bool = True, area: int = 1,
          residual: bool = False, mlp_ratio: float = 2.0, e: float = 0.5, g: int = 1, shortcut: bool = True):
    c_ = _hidden(c2, e, prefix)
    pieces = [conv(net, weights, f"{prefix}.cv1", x, c1, c_, 1)]
    for i in range(n):
        name = f"{prefix}.m.{i}"
        if a2:
            y = pieces[-1]
            for j in range(2):
                y = area_block(net, weights, f"{name}.{j}", y, c_, c_ // HEAD_DIM, mlp_ratio, area)
            pieces.append(layers.rename(y, name))
        else:
            pieces.append(c3k(net, weights, name, pieces[-1], c_, c_, 2, shortcut, g))
    cat = layers.concat(net, pieces, f"{prefix}/concat")
    y = conv(net, weights, f"{prefix}.cv2", cat, (1 + n) * c_, c2, 1)
    if not (a2 and residual):
        return layers.rename(y, prefix)
    gamma = weights.take(f"{prefix}.gamma", (c2,)).reshape(1, c2, 1, 1).astype(layers.weight_dtype(y))
    scaled_y = layers.multiply(net, y, layers.constant(net, gamma, f"{prefix}.gamma"), f"{prefix}/gamma_y")
    return layers.add(net, x, scaled_y, prefix)


def a2c2f_resolve(row):
    """Upstream appends (residual=True, mlp_ratio=1.2) to every A2C2f row at scales l and x, after the row's own
    args (the walker inserts n afterwards, as upstream inserts it before)."""
    args, c2 = scaled(row)
    if row.scale in ("l", "x"):
        args = [*args, True, 1.2]
    a2, residual = (args[2:3] or [True])[0], (args[4:5] or [False])[0]
    _hidden(c2, args[6] if len(args) > 6 else 0.5, row.where())
    if a2 and residual and args[0] != c2:
        raise TableError(f"{row.where()}: a residual A2C2f keeps its channels, but its input has {args[0]} and it "
                         f"asks {c2}")
    return args, c2


register(Block("A2C2f", A2C2f, a2c2f, resolve=a2c2f_resolve, repeats=True))
