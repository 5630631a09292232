"""MaxViT (torchvision's maxvit_t) with torchvision's state_dict keys, written without torchvision.

A stem (3x3 stride-2 conv + BatchNorm + GELU, 3x3 conv with bias), four blocks of MaxVit layers (each an MBConv,
then block attention inside 7x7 windows and grid attention among pixels H/7 apart, both with a relative position
bias; the first layer of a block halves the map), and a head (mean over H and W, LayerNorm, Linear, tanh, Linear
without bias). BatchNorm eps 1e-3, LayerNorm eps 1e-5, GELU (erf) everywhere but the squeeze-excitation (SiLU).

Read from the weights: stem width, channels and layers per block, the partition size (the relative position index
holds p^4 entries), heads (bias table rows / (2p - 1)^2), the MBConv expansion and squeeze widths, the MLP width,
the class count. The input size must give every block a map divisible by the partition size (224 for maxvit_t:
56, 28, 14, 7); torchvision's module is built for its input size (the grid attention's tile is H / 7), and so is
the zoo's reference module.
"""
from __future__ import annotations

from collections import OrderedDict

import torch
from torch import nn

import layers
from layers import maxvit as blocks
from layers.swin import relative_position_index
from zoo.engine.classifier import ClassifierModel, check_variant
from zoo.engine.model import randomize_batchnorm, randomize_layer_norms
from zoo.reference_modules import SqueezeExcitation
from zoo.vision.imagenet import CropSpec

# torchvision's maxvit_t: stem, channels per block, layers per block, head width, partition size
VARIANTS = {"maxvit_t": (64, (64, 128, 256, 512), (2, 2, 5, 2), 32, 7)}
CROP = (224, 224)  # torchvision's MaxVit_T_Weights: crop 224 after resizing to 224, bicubic


def halved(size: int) -> int:
    """The output size of a 3x3 stride-2 convolution with padding 1."""
    return (size - 1) // 2 + 1


def block_sizes(input_size: int, blocks_count: int) -> list[int]:
    size, sizes = halved(input_size), []
    for _ in range(blocks_count):
        size = halved(size)
        sizes.append(size)
    return sizes


# ---------------------------------------------------------------------------------------------------------------
# PyTorch reference modules


def conv_bn_gelu(cin, cout, kernel, stride=1, groups=1):
    """torchvision's Conv2dNormActivation(BatchNorm eps 1e-3, GELU): conv 0 (no bias), bn 1, activation 2."""
    return nn.Sequential(nn.Conv2d(cin, cout, kernel, stride, kernel // 2, groups=groups, bias=False),
                         nn.BatchNorm2d(cout, eps=blocks.BN_EPS), nn.GELU())


class MBConv(nn.Module):
    def __init__(self, cin, cout, stride, expansion=4.0, squeeze=0.25):
        super().__init__()
        if stride == 2:
            self.proj = nn.Sequential(nn.AvgPool2d(3, 2, 1), nn.Conv2d(cin, cout, 1))
        elif cin != cout:
            self.proj = nn.Sequential(nn.Conv2d(cin, cout, 1))
        else:
            self.proj = nn.Identity()
        mid = int(cout * expansion)
        self.layers = nn.Sequential(OrderedDict(
            pre_norm=nn.BatchNorm2d(cin, eps=blocks.BN_EPS), conv_a=conv_bn_gelu(cin, mid, 1),
            conv_b=conv_bn_gelu(mid, mid, 3, stride, mid),
            squeeze_excitation=SqueezeExcitation(mid, int(cout * squeeze), "silu", "sigmoid"),
            conv_c=nn.Conv2d(mid, cout, 1)))

    def forward(self, x):
        return self.proj(x) + self.layers(x)  # stochastic depth: identity in eval


class RelativePositionalMultiHeadAttention(nn.Module):
    """Attention over axis 2 of [B, G, P, C], P = partition^2."""

    def __init__(self, dim, head_dim, partition):
        super().__init__()
        self.heads, self.partition = dim // head_dim, partition
        self.to_qkv = nn.Linear(dim, 3 * dim)
        self.merge = nn.Linear(dim, dim)
        self.relative_position_bias_table = nn.Parameter(torch.randn((2 * partition - 1) ** 2, self.heads) * 0.02)
        self.register_buffer("relative_position_index",
                             torch.from_numpy(relative_position_index(partition).reshape(partition ** 2, -1)))

    def forward(self, x):
        b, g, p, c = x.shape
        q, k, v = (t.reshape(b, g, p, self.heads, -1).transpose(2, 3) for t in self.to_qkv(x).chunk(3, -1))
        bias = self.relative_position_bias_table[self.relative_position_index.reshape(-1)].reshape(p, p, -1)
        scores = q @ (k * c ** -0.5).transpose(-2, -1) + bias.permute(2, 0, 1)
        return self.merge((scores.softmax(-1) @ v).transpose(2, 3).reshape(b, g, p, c))


class SwapAxes(nn.Module):
    def forward(self, x):
        return x.transpose(-2, -3)


class PartitionAttentionLayer(nn.Module):
    def __init__(self, dim, head_dim, partition, grid, map_size, mlp_ratio=4):
        super().__init__()
        self.tile = map_size // partition if grid else partition
        self.partition_swap = SwapAxes() if grid else nn.Identity()
        self.attn_layer = nn.Sequential(nn.LayerNorm(dim), RelativePositionalMultiHeadAttention(dim, head_dim,
                                                                                                partition),
                                        nn.Dropout(0.0))
        self.mlp_layer = nn.Sequential(nn.LayerNorm(dim), nn.Linear(dim, dim * mlp_ratio), nn.GELU(),
                                       nn.Linear(dim * mlp_ratio, dim), nn.Dropout(0.0))

    def forward(self, x):
        n, c, h, w = x.shape
        t = self.tile
        tiles = x.reshape(n, c, h // t, t, w // t, t).permute(0, 2, 4, 3, 5, 1).reshape(n, -1, t * t, c)
        y = self.partition_swap(tiles)
        y = y + self.attn_layer(y)
        y = y + self.mlp_layer(y)
        y = self.partition_swap(y)
        return y.reshape(n, h // t, w // t, t, t, c).permute(0, 5, 1, 3, 2, 4).reshape(n, c, h, w)


class MaxVitLayer(nn.Module):
    def __init__(self, cin, cout, stride, head_dim, partition, map_size, mlp_ratio=4):
        super().__init__()
        self.layers = nn.Sequential(OrderedDict(
            MBconv=MBConv(cin, cout, stride),
            window_attention=PartitionAttentionLayer(cout, head_dim, partition, False, map_size, mlp_ratio),
            grid_attention=PartitionAttentionLayer(cout, head_dim, partition, True, map_size, mlp_ratio)))

    def forward(self, x):
        return self.layers(x)


class MaxVitBlock(nn.Module):
    def __init__(self, cin, cout, count, head_dim, partition, map_size):
        super().__init__()
        self.layers = nn.ModuleList(MaxVitLayer(cin if i == 0 else cout, cout, 2 if i == 0 else 1, head_dim,
                                                partition, map_size) for i in range(count))

    def forward(self, x):
        for layer in self.layers:
            x = layer(x)
        return x


class MaxVit(nn.Module):
    def __init__(self, input_size=224, stem=64, channels=(64, 128, 256, 512), counts=(2, 2, 5, 2), head_dim=32,
                 partition=7, num_classes=1000):
        super().__init__()
        sizes = block_sizes(input_size, len(channels))
        self.stem = nn.Sequential(conv_bn_gelu(3, stem, 3, 2), nn.Sequential(nn.Conv2d(stem, stem, 3, 1, 1)))
        self.blocks = nn.ModuleList(MaxVitBlock(cin, cout, count, head_dim, partition, size) for cin, cout, count, size
                                    in zip((stem, *channels[:-1]), channels, counts, sizes))
        last = channels[-1]
        self.classifier = nn.Sequential(nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.LayerNorm(last),
                                        nn.Linear(last, last), nn.Tanh(), nn.Linear(last, num_classes, bias=False))

    def forward(self, x):
        x = self.stem(x)
        for block in self.blocks:
            x = block(x)
        return self.classifier(x)


def randomize(module: nn.Module, seed: int) -> nn.Module:
    """BatchNorm statistics, LayerNorm affines and position bias tables away from their start values."""
    generator = torch.Generator().manual_seed(seed)
    randomize_batchnorm(module, generator)
    randomize_layer_norms(module, generator)
    with torch.no_grad():
        for m in module.modules():
            if isinstance(m, RelativePositionalMultiHeadAttention):
                m.relative_position_bias_table.copy_(torch.randn(m.relative_position_bias_table.shape,
                                                                 generator=generator))
    return module


# ---------------------------------------------------------------------------------------------------------------
# configuration from the weights


def _layers(weights, block: int) -> int:
    n = 0
    while f"blocks.{block}.layers.{n}.layers.MBconv.layers.conv_c.bias" in weights:
        n += 1
    return n


def read_config(weights, source: str) -> dict:
    if "stem.0.0.weight" not in weights or "blocks.0.layers.0.layers.MBconv.layers.conv_c.bias" not in weights:
        raise ValueError(f"{source}: not MaxViT weights (no 'stem.0.0.weight' / "
                         f"'blocks.0.layers.0.layers.MBconv.layers.conv_c.bias' keys)")
    counts, channels = [], []
    while _layers(weights, len(counts)):
        channels.append(weights.count(f"blocks.{len(counts)}.layers.0.layers.MBconv.layers.conv_c.bias"))
        counts.append(_layers(weights, len(counts)))
    attention = "blocks.0.layers.0.layers.window_attention.attn_layer.1"
    index = weights.count(f"{attention}.relative_position_index")
    partition = round(index ** 0.25)
    if partition ** 4 != index or partition < 2:
        raise ValueError(f"{source}: '{attention}.relative_position_index' has {index} values, which fit no square "
                         f"partition")
    heads = weights.count(f"{attention}.relative_position_bias_table") // (2 * partition - 1) ** 2
    if heads < 1 or channels[0] % heads:
        raise ValueError(f"{source}: '{attention}.relative_position_bias_table' gives {heads} heads, which do not "
                         f"divide {channels[0]} channels")
    return {"stem": weights.count("stem.1.0.bias"), "channels": channels, "counts": counts,
            "head_dim": channels[0] // heads, "partition": partition,
            "num_classes": weights.count("classifier.5.weight") // channels[-1]}


def check_input_size(size: int, partition: int, blocks_count: int) -> None:
    sizes = block_sizes(size, blocks_count)
    if any(s % partition for s in sizes):
        raise ValueError(f"--input-size {size} gives the blocks maps of {sizes} pixels; MaxViT needs each divisible by "
                         f"its partition size {partition} (224 for maxvit_t)")


class MaxVitModel(ClassifierModel):
    name = "maxvit"
    summary = "MaxViT-T (torchvision keys): MBConv, block and grid attention; ImageNet pre-processing, top-5."

    def add_arguments(self, parser):
        parser.add_argument("--variant", choices=tuple(VARIANTS),
                            help="random weights use it (default maxvit_t); with --weights it must agree")
        parser.add_argument("--num-classes", type=int, default=1000, help="classes of random weights (default 1000)")
        parser.add_argument("--input-size", type=int, default=224,
                            help="input height and width; every block's map must divide by the partition size "
                                 "(default 224)")

    def random_module(self, args, seed):
        torch.manual_seed(seed)
        stem, channels, counts, head_dim, partition = VARIANTS[args.variant or "maxvit_t"]
        size = args.input_size if not any(s % partition for s in block_sizes(args.input_size, 4)) else 224
        return randomize(MaxVit(size, stem, channels, counts, head_dim, partition, args.num_classes), seed).eval()

    def config_from_weights(self, weights, args):
        config = read_config(weights, weights.source)
        spec = (config["stem"], tuple(config["channels"]), tuple(config["counts"]), config["head_dim"],
                config["partition"])
        config = {"variant": next((v for v, s in VARIANTS.items() if s == spec), "maxvit_custom"), **config}
        check_variant(config, args, weights.source)
        check_input_size(args.input_size, config["partition"], len(config["channels"]))
        return {**config, "input_size": args.input_size}

    def crop_spec(self, config):
        import cv2
        return CropSpec.scaled(config["input_size"], CROP[1] / CROP[0], interpolation=cv2.INTER_CUBIC)

    def reference_module(self, config):
        c = config
        return MaxVit(c["input_size"], c["stem"], c["channels"], c["counts"], c["head_dim"], c["partition"],
                      c["num_classes"])

    def input_shape(self, config):
        return (3, config["input_size"], config["input_size"])

    def define(self, net, weights, config, x):
        stem = config["stem"]
        y = layers.conv_bn(net, weights, "stem.0.0", "stem.0.1", x, stem, 3, 2, 1, eps=blocks.BN_EPS)
        y = layers.activation(net, y, "gelu", "stem.0")
        y = layers.rename(layers.conv2d(net, weights, "stem.1.0", y, stem, 3, 1, 1), "stem")
        for i, (channels, count) in enumerate(zip(config["channels"], config["counts"])):
            heads = channels // config["head_dim"]
            for j in range(count):
                y = blocks.maxvit_layer(net, weights, f"blocks.{i}.layers.{j}", y, channels, 2 if j == 0 else 1,
                                        config["partition"], heads)
            layers.rename(y, f"blocks.{i}")
        last = config["channels"][-1]
        y = layers.flatten(net, layers.global_avg_pool(net, y, "classifier.0"), "classifier.1")
        y = layers.layer_norm(net, weights, "classifier.2", y, blocks.LN_EPS)
        y = layers.activation(net, layers.linear(net, weights, "classifier.3", y, last), "tanh", "classifier.4")
        return [layers.rename(layers.linear(net, weights, "classifier.5", y, config["num_classes"], bias=False),
                              "classifier")]
