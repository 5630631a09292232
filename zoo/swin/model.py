"""Swin Transformer (swin_t, swin_s, swin_b) and Swin Transformer V2 (swin_v2_t, swin_v2_s, swin_v2_b) with
torchvision's state_dict keys, written without torchvision.

Both are channels-last ([N, H, W, C]) from the patch embedding (4x4 stride-4 convolution, LayerNorm) to the head
(LayerNorm, mean over H and W, Linear). A stage is a run of blocks whose window attention alternates between
regular windows and windows shifted by half a window (a cyclic roll of the map, with a mask so that tokens that
the roll brought together from opposite borders do not attend to each other); maps that are not a multiple of the
window are zero-padded at the bottom/right before the attention (the padding takes part in it, as in torchvision),
and a window as large as the map is never shifted. Stages are joined by patch merging (the four pixels of each 2x2
cell side by side, then LayerNorm and a Linear to twice the channels; V2 projects first, then normalizes).

V1: pre-norm blocks, scaled dot-product attention plus a learned relative position bias (a table of
(2w - 1)^2 x heads, indexed by the offset between two tokens of a window). V2: post-norm blocks (x + norm(attn(x))),
cosine attention (normalized q and k, times exp(min(logit_scale, log 100)) per head; the key bias is zeroed) and a
continuous position bias: a 2-512-heads MLP on log-spaced offsets, 16 * sigmoid of it.

Read from the weights: embedding width (`features.0.0.bias`), blocks per stage, heads per stage (V1: bias table
rows / (2w - 1)^2; V2: `logit_scale`), the window (V1: `relative_position_index` holds w^4 entries; V2:
`relative_coords_table` holds (2w - 1)^2 x 2), the MLP width and the class count; V1 or V2 from the keys. The
index and coordinate buffers are checked against the ones the window gives. Input sizes: multiples of 32.
"""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

import layers
from layers import swin
from zoo.engine.classifier import ClassifierModel, check_stride_32, check_variant
from zoo.engine.model import randomize_layer_norms
from zoo.vision.imagenet import CropSpec

LN_EPS = 1e-5
# torchvision's variants: (V2, embedding width, blocks per stage, heads per stage, window)
VARIANTS = {"swin_t": (False, 96, (2, 2, 6, 2), (3, 6, 12, 24), 7),
            "swin_s": (False, 96, (2, 2, 18, 2), (3, 6, 12, 24), 7),
            "swin_b": (False, 128, (2, 2, 18, 2), (4, 8, 16, 32), 7),
            "swin_v2_t": (True, 96, (2, 2, 6, 2), (3, 6, 12, 24), 8),
            "swin_v2_s": (True, 96, (2, 2, 18, 2), (3, 6, 12, 24), 8),
            "swin_v2_b": (True, 128, (2, 2, 18, 2), (4, 8, 16, 32), 8)}
# torchvision's weights' transforms: (crop, resize), bicubic
CROPS = {"swin_t": (224, 232), "swin_s": (224, 246), "swin_b": (224, 238),
         "swin_v2_t": (256, 260), "swin_v2_s": (256, 260), "swin_v2_b": (256, 272)}


# ---------------------------------------------------------------------------------------------------------------
# PyTorch reference modules


class Permute(nn.Module):
    def __init__(self, dims):
        super().__init__()
        self.dims = tuple(dims)

    def forward(self, x):
        return x.permute(*self.dims)


def window_partition(x: torch.Tensor, w: int) -> torch.Tensor:
    """[N, H, W, C] (H, W multiples of w) -> [N * windows, w * w, C], windows in row-major order."""
    n, h, wd, c = x.shape
    return x.reshape(n, h // w, w, wd // w, w, c).transpose(2, 3).reshape(-1, w * w, c)


def window_merge(x: torch.Tensor, w: int, n: int, h: int, wd: int) -> torch.Tensor:
    """The inverse of window_partition."""
    return x.reshape(n, h // w, wd // w, w, w, -1).transpose(2, 3).reshape(n, h, wd, -1)


class ShiftedWindowAttention(nn.Module):
    """Window attention over [N, H, W, C]; `shift` 0 or w // 2. V1: relative position bias table."""

    def __init__(self, dim, window, shift, heads):
        super().__init__()
        self.window, self.shift, self.heads = window, shift, heads
        self.qkv = nn.Linear(dim, 3 * dim)
        self.proj = nn.Linear(dim, dim)
        self.relative_position_bias_table = nn.Parameter(torch.randn((2 * window - 1) ** 2, heads) * 0.02)
        self.register_buffer("relative_position_index", torch.from_numpy(swin.relative_position_index(window)))

    def position_bias(self) -> torch.Tensor:
        """[heads, w*w, w*w]."""
        w2 = self.window ** 2
        return self.relative_position_bias_table[self.relative_position_index].reshape(w2, w2, -1).permute(2, 0, 1)

    def scores(self, q, k):
        return (q * (q.shape[-1] ** -0.5)) @ k.transpose(-2, -1)

    def qkv_bias(self):
        return self.qkv.bias

    def forward(self, x):
        n, h, wd, c = x.shape
        w = self.window
        ph, pw = -h % w, -wd % w
        x = F.pad(x, (0, 0, 0, pw, 0, ph))
        hp, wp = h + ph, wd + pw
        shift = (self.shift if w < hp else 0, self.shift if w < wp else 0)
        if any(shift):
            x = torch.roll(x, (-shift[0], -shift[1]), (1, 2))
        tokens = window_partition(x, w)
        q, k, v = F.linear(tokens, self.qkv.weight, self.qkv_bias()).reshape(
            tokens.shape[0], w * w, 3, self.heads, -1).permute(2, 0, 3, 1, 4)
        attn = self.scores(q, k) + self.position_bias()[None]
        if any(shift):
            mask = torch.from_numpy(swin.shift_mask(hp, wp, w, shift)).to(attn.dtype)  # [windows, L, L]
            attn = (attn.reshape(n, -1, self.heads, w * w, w * w) + mask[None, :, None]).reshape(attn.shape)
        y = (attn.softmax(-1) @ v).transpose(1, 2).reshape(tokens.shape[0], w * w, c)
        y = window_merge(self.proj(y), w, n, hp, wp)
        if any(shift):
            y = torch.roll(y, shift, (1, 2))
        return y[:, :h, :wd].contiguous()


class ShiftedWindowAttentionV2(ShiftedWindowAttention):
    """V2: cosine attention with a learned per-head logit scale; continuous position bias from an MLP."""

    def __init__(self, dim, window, shift, heads):
        nn.Module.__init__(self)
        self.window, self.shift, self.heads = window, shift, heads
        self.qkv = nn.Linear(dim, 3 * dim)
        self.proj = nn.Linear(dim, dim)
        self.logit_scale = nn.Parameter(torch.full((heads, 1, 1), math.log(10.0)))
        self.cpb_mlp = nn.Sequential(nn.Linear(2, 512), nn.ReLU(), nn.Linear(512, heads, bias=False))
        self.register_buffer("relative_coords_table", torch.from_numpy(swin.log_spaced_coordinates(window)))
        self.register_buffer("relative_position_index", torch.from_numpy(swin.relative_position_index(window)))

    def position_bias(self):
        w2 = self.window ** 2
        table = self.cpb_mlp(self.relative_coords_table).reshape(-1, self.heads)
        return 16 * torch.sigmoid(table[self.relative_position_index].reshape(w2, w2, -1).permute(2, 0, 1))

    def scores(self, q, k):
        cosine = F.normalize(q, dim=-1) @ F.normalize(k, dim=-1).transpose(-2, -1)
        return cosine * torch.clamp(self.logit_scale, max=math.log(100.0)).exp()

    def qkv_bias(self):
        c = self.qkv.bias.numel() // 3  # the key has no bias in V2
        return torch.cat([self.qkv.bias[:c], torch.zeros_like(self.qkv.bias[c:2 * c]), self.qkv.bias[2 * c:]])


class MLP(nn.Sequential):
    """torchvision.ops.MLP(dim, [hidden, dim], GELU): Linear, GELU, Dropout, Linear, Dropout."""

    def __init__(self, dim, hidden):
        super().__init__(nn.Linear(dim, hidden), nn.GELU(), nn.Dropout(0.0), nn.Linear(hidden, dim), nn.Dropout(0.0))


class SwinTransformerBlock(nn.Module):
    def __init__(self, dim, heads, window, shift, v2=False, mlp_ratio=4.0):
        super().__init__()
        self.v2 = v2
        self.norm1 = nn.LayerNorm(dim, eps=LN_EPS)
        self.attn = (ShiftedWindowAttentionV2 if v2 else ShiftedWindowAttention)(dim, window, shift, heads)
        self.stochastic_depth = nn.Identity()  # torchvision's StochasticDepth in eval
        self.norm2 = nn.LayerNorm(dim, eps=LN_EPS)
        self.mlp = MLP(dim, round(dim * mlp_ratio))  # torchvision: int(); equal for its ratio 4

    def forward(self, x):
        if self.v2:  # post-norm
            x = x + self.stochastic_depth(self.norm1(self.attn(x)))
            return x + self.stochastic_depth(self.norm2(self.mlp(x)))
        x = x + self.stochastic_depth(self.attn(self.norm1(x)))
        return x + self.stochastic_depth(self.mlp(self.norm2(x)))


def merge_2x2(x: torch.Tensor) -> torch.Tensor:
    """[..., H, W, C] -> [..., H/2, W/2, 4C]: pixels (0,0), (1,0), (0,1), (1,1) of each cell (odd sizes padded)."""
    x = F.pad(x, (0, 0, 0, x.shape[-2] % 2, 0, x.shape[-3] % 2))
    return torch.cat([x[..., 0::2, 0::2, :], x[..., 1::2, 0::2, :], x[..., 0::2, 1::2, :], x[..., 1::2, 1::2, :]], -1)


class PatchMerging(nn.Module):
    def __init__(self, dim, v2=False):
        super().__init__()
        self.v2 = v2
        self.reduction = nn.Linear(4 * dim, 2 * dim, bias=False)
        self.norm = nn.LayerNorm(2 * dim if v2 else 4 * dim, eps=LN_EPS)

    def forward(self, x):
        x = merge_2x2(x)
        return self.norm(self.reduction(x)) if self.v2 else self.reduction(self.norm(x))


class SwinTransformer(nn.Module):
    def __init__(self, dim=96, depths=(2, 2, 6, 2), heads=(3, 6, 12, 24), window=7, v2=False, num_classes=1000,
                 mlp_ratio=4.0):
        super().__init__()
        features = [nn.Sequential(nn.Conv2d(3, dim, 4, 4), Permute((0, 2, 3, 1)), nn.LayerNorm(dim, eps=LN_EPS))]
        for i, (depth, head_count) in enumerate(zip(depths, heads)):
            width = dim * 2 ** i
            features.append(nn.Sequential(*(SwinTransformerBlock(width, head_count, window, window // 2 if j % 2 else 0,
                                                                 v2, mlp_ratio) for j in range(depth))))
            if i < len(depths) - 1:
                features.append(PatchMerging(width, v2))
        self.features = nn.Sequential(*features)
        width = dim * 2 ** (len(depths) - 1)
        self.norm = nn.LayerNorm(width, eps=LN_EPS)
        self.permute = Permute((0, 3, 1, 2))
        self.avgpool = nn.AdaptiveAvgPool2d(1)
        self.flatten = nn.Flatten(1)
        self.head = nn.Linear(width, num_classes)

    def forward(self, x):
        return self.head(self.flatten(self.avgpool(self.permute(self.norm(self.features(x))))))


def build(variant: str, num_classes: int = 1000) -> SwinTransformer:
    v2, dim, depths, heads, window = VARIANTS[variant]
    return SwinTransformer(dim, depths, heads, window, v2, num_classes)


def randomize(module: nn.Module, seed: int) -> nn.Module:
    """LayerNorm affines away from ones and zeros, position bias tables and logit scales away from their start
    values, and key biases that are not zero (V2 must ignore them), so that each shows in validation."""
    generator = torch.Generator().manual_seed(seed)
    randomize_layer_norms(module, generator)
    with torch.no_grad():
        for m in module.modules():
            if isinstance(m, ShiftedWindowAttentionV2):
                m.logit_scale.copy_(torch.rand(m.logit_scale.shape, generator=generator) * 3.0 + 1.0)
                m.logit_scale[0] = math.log(100.0) + 0.5  # one head above the clamp, so that the clamp shows
                m.qkv.bias.copy_(torch.randn(m.qkv.bias.shape, generator=generator) * 0.5)
            elif isinstance(m, ShiftedWindowAttention):
                m.relative_position_bias_table.copy_(torch.randn(m.relative_position_bias_table.shape,
                                                                 generator=generator))
    return module


# ---------------------------------------------------------------------------------------------------------------
# configuration from the weights


def _blocks(weights, stage_index: int) -> int:
    n = 0
    while f"features.{stage_index}.{n}.norm1.weight" in weights:
        n += 1
    return n


def read_config(weights, source: str) -> dict:
    if "features.0.0.weight" not in weights or "features.1.0.attn.qkv.weight" not in weights:
        raise ValueError(f"{source}: not Swin Transformer weights (no 'features.0.0.weight' / "
                         f"'features.1.0.attn.qkv.weight' keys)")
    v2 = "features.1.0.attn.logit_scale" in weights
    dim = weights.count("features.0.0.bias")
    depths = []
    while _blocks(weights, 2 * len(depths) + 1):
        depths.append(_blocks(weights, 2 * len(depths) + 1))
    window = swin.window_from_weights(weights, "features.1.0.attn", v2)
    heads = []
    for i in range(len(depths)):
        p = f"features.{2 * i + 1}.0.attn"
        heads.append(weights.count(f"{p}.logit_scale") if v2 else
                     weights.count(f"{p}.relative_position_bias_table") // (2 * window - 1) ** 2)
        if heads[-1] < 1 or (dim * 2 ** i) % heads[-1]:
            raise ValueError(f"{source}: '{p}' has {heads[-1]} heads, which do not divide its {dim * 2 ** i} channels")
    mlp = weights.count("features.1.0.mlp.0.bias")
    return {"v2": v2, "dim": dim, "depths": depths, "heads": heads, "window": window, "mlp_ratio": mlp / dim,
            "num_classes": weights.count("head.bias")}


# ---------------------------------------------------------------------------------------------------------------
# the zoo models (one class, two command names)


class SwinModel(ClassifierModel):
    def __init__(self, name: str = "swin"):
        self.name = name
        self.default = "swin_v2_t" if name == "swin_v2" else "swin_t"
        self.summary = (f"Swin Transformer {'V2 ' if name == 'swin_v2' else ''}tiny/small/base (torchvision keys; "
                        f"either command reads V1 and V2 weights), ImageNet pre-processing, top-5 classification.")

    def add_arguments(self, parser):
        parser.add_argument("--variant", choices=tuple(VARIANTS),
                            help=f"random weights use it (default {self.default}); with --weights it must agree")
        parser.add_argument("--num-classes", type=int, default=1000, help="classes of random weights (default 1000)")
        parser.add_argument("--input-size", type=int,
                            help="input height and width, a multiple of 32 (default: the variant's, 224 for V1, "
                                 "256 for V2)")

    def random_module(self, args, seed):
        torch.manual_seed(seed)
        return randomize(build(args.variant or self.default, args.num_classes), seed).eval()

    def config_from_weights(self, weights, args):
        config = read_config(weights, weights.source)
        spec = (config["v2"], config["dim"], tuple(config["depths"]), tuple(config["heads"]), config["window"])
        variant = next((v for v, s in VARIANTS.items() if s == spec and config["mlp_ratio"] == 4.0),
                       "swin_v2_custom" if config["v2"] else "swin_custom")
        config = {"variant": variant, **config}
        check_variant(config, args, weights.source)
        size = args.input_size or CROPS.get(variant, (256 if config["v2"] else 224,))[0]
        check_stride_32(size, "Swin")
        return {**config, "input_size": size}

    def crop_spec(self, config):
        import cv2
        crop, resize = CROPS.get(config["variant"], (224, 232))
        return CropSpec.scaled(config["input_size"], resize / crop, interpolation=cv2.INTER_CUBIC)

    def reference_module(self, config):
        c = config
        return SwinTransformer(c["dim"], c["depths"], c["heads"], c["window"], c["v2"], c["num_classes"],
                               c["mlp_ratio"])

    def input_shape(self, config):
        return (3, config["input_size"], config["input_size"])

    def define(self, net, weights, config, x):
        dim, v2, window = config["dim"], config["v2"], config["window"]
        y = layers.conv2d(net, weights, "features.0.0", x, dim, 4, 4)
        y = layers.transpose(net, y, (0, 2, 3, 1), "features.0.1")
        y = layers.rename(layers.layer_norm(net, weights, "features.0.2", y, LN_EPS), "features.0")
        for i, (depth, heads) in enumerate(zip(config["depths"], config["heads"])):
            stage = 2 * i + 1
            for j in range(depth):
                y = swin.block(net, weights, f"features.{stage}.{j}", y, heads, window, window // 2 if j % 2 else 0,
                               v2, LN_EPS)
            layers.rename(y, f"features.{stage}")
            if i < len(config["depths"]) - 1:
                y = swin.patch_merging(net, weights, f"features.{stage + 1}", y, v2, LN_EPS)
        y = layers.layer_norm(net, weights, "norm", layers.rename(y, "features"), LN_EPS)
        y = layers.transpose(net, y, (0, 3, 1, 2), "permute")
        y = layers.flatten(net, layers.global_avg_pool(net, y, "avgpool"), "flatten")
        return [layers.linear(net, weights, "head", y, config["num_classes"])]
