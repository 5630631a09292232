"""Vision Transformer (torchvision's vit_b_16, vit_b_32, vit_l_16, vit_l_32, vit_h_14), written without torchvision.

Read from the weights: embedding width (`conv_proj.bias`), patch size (`conv_proj.weight` = width x 3 x p x p), image
size (the position embedding holds (size / p)^2 + 1 tokens, so the input size is the weights', not a flag), layer
count, MLP width and class count. The head count is not in any shape: it is torchvision's for the width (768: 12,
1024 and 1280: 16), or --heads. With TensorRT layers: the patch embedding is a strided convolution and a shuffle, the
class token is broadcast to the batch and concatenated (layers.prepend_token), attention is three matrix multiplies
for q, k, v, a batched q k^T, softmax and a batched product with v, heads split and merged by shuffles; LayerNorm is
TensorRT's normalization layer (eps 1e-6), GELU the erf activation.
"""
from __future__ import annotations

import math
from collections import OrderedDict

import torch
from torch import nn

import layers
from zoo.engine.classifier import ClassifierModel
from zoo.engine.model import randomize_layer_norms
from zoo.vision.imagenet import CropSpec

LN_EPS = 1e-6
# patch, width, layers, heads, MLP width
VARIANTS = {"vit_b_16": (16, 768, 12, 12, 3072), "vit_b_32": (32, 768, 12, 12, 3072),
            "vit_l_16": (16, 1024, 24, 16, 4096), "vit_l_32": (32, 1024, 24, 16, 4096),
            "vit_h_14": (14, 1280, 32, 16, 5120)}
HEADS_FOR_WIDTH = {768: 12, 1024: 16, 1280: 16}
RESIZE = {"vit_l_16": 242}  # torchvision's transforms for its weights; 256 otherwise


class MLPBlock(nn.Sequential):
    def __init__(self, dim, mlp_dim):
        super().__init__(nn.Linear(dim, mlp_dim), nn.GELU(), nn.Dropout(0.0), nn.Linear(mlp_dim, dim), nn.Dropout(0.0))


class EncoderBlock(nn.Module):
    def __init__(self, heads, dim, mlp_dim):
        super().__init__()
        self.ln_1 = nn.LayerNorm(dim, eps=LN_EPS)
        self.self_attention = nn.MultiheadAttention(dim, heads, batch_first=True)
        self.dropout = nn.Dropout(0.0)
        self.ln_2 = nn.LayerNorm(dim, eps=LN_EPS)
        self.mlp = MLPBlock(dim, mlp_dim)

    def forward(self, x):
        y = self.ln_1(x)
        y, _ = self.self_attention(y, y, y, need_weights=False)
        x = self.dropout(y) + x
        return x + self.mlp(self.ln_2(x))


class Encoder(nn.Module):
    def __init__(self, seq_length, num_layers, heads, dim, mlp_dim):
        super().__init__()
        self.pos_embedding = nn.Parameter(torch.empty(1, seq_length, dim).normal_(std=0.02))
        self.dropout = nn.Dropout(0.0)
        self.layers = nn.Sequential(OrderedDict(
            (f"encoder_layer_{i}", EncoderBlock(heads, dim, mlp_dim)) for i in range(num_layers)))
        self.ln = nn.LayerNorm(dim, eps=LN_EPS)

    def forward(self, x):
        return self.ln(self.layers(self.dropout(x + self.pos_embedding)))


class VisionTransformer(nn.Module):
    def __init__(self, image_size=224, patch=16, num_layers=12, heads=12, dim=768, mlp_dim=3072, num_classes=1000):
        super().__init__()
        self.patch = patch
        self.conv_proj = nn.Conv2d(3, dim, patch, patch)
        self.class_token = nn.Parameter(torch.zeros(1, 1, dim))
        self.encoder = Encoder((image_size // patch) ** 2 + 1, num_layers, heads, dim, mlp_dim)
        self.heads = nn.Sequential(OrderedDict(head=nn.Linear(dim, num_classes)))

    def forward(self, x):
        x = self.conv_proj(x)
        x = x.reshape(x.shape[0], x.shape[1], -1).permute(0, 2, 1)
        x = torch.cat([self.class_token.expand(x.shape[0], -1, -1), x], dim=1)
        return self.heads(self.encoder(x)[:, 0])


def randomize(module: nn.Module, seed: int) -> nn.Module:
    """A class token and LayerNorm affines that are not zeros and ones, so each shows in validation."""
    generator = torch.Generator().manual_seed(seed)
    randomize_layer_norms(module, generator)
    with torch.no_grad():
        module.class_token.copy_(torch.randn(module.class_token.shape, generator=generator))
    return module


def read_config(weights, source: str, heads: int | None) -> dict:
    needed = ("conv_proj.weight", "class_token", "encoder.pos_embedding", "heads.head.bias")
    missing = [k for k in needed if k not in weights]
    if missing:
        raise ValueError(f"{source}: not Vision Transformer weights (no {missing[0]!r} key)")
    if "heads.pre_logits.weight" in weights:
        raise ValueError(f"{source}: a ViT with a pre-logits layer ('heads.pre_logits.weight'), which the zoo does "
                         f"not build (torchvision's ImageNet weights have none)")
    dim = weights.count("conv_proj.bias")
    patch = math.isqrt(weights.count("conv_proj.weight") // (3 * dim))
    tokens = weights.count("encoder.pos_embedding") // dim
    side = math.isqrt(tokens - 1)
    if 3 * dim * patch * patch != weights.count("conv_proj.weight") or side * side != tokens - 1:
        raise ValueError(f"{source}: 'conv_proj.weight' ({weights.count('conv_proj.weight')} values) and "
                         f"'encoder.pos_embedding' ({tokens} tokens of {dim}) are no square patch grid")
    num_layers = 0
    while f"encoder.layers.encoder_layer_{num_layers}.ln_1.weight" in weights:
        num_layers += 1
    if heads is None:
        if dim not in HEADS_FOR_WIDTH:
            raise ValueError(f"{source}: width {dim} is none of torchvision's ({sorted(HEADS_FOR_WIDTH)}); the head "
                             f"count is not in the weights: give --heads")
        heads = HEADS_FOR_WIDTH[dim]
    if dim % heads:
        raise ValueError(f"--heads {heads} does not divide the weights' width {dim}")
    return {"image_size": side * patch, "patch": patch, "num_layers": num_layers, "heads": heads, "dim": dim,
            "mlp_dim": weights.count("encoder.layers.encoder_layer_0.mlp.0.bias"),
            "num_classes": weights.count("heads.head.bias")}


def encoder_block(net, weights, prefix, x, heads, mlp_dim):
    y = layers.layer_norm(net, weights, f"{prefix}.ln_1", x, LN_EPS)
    y = layers.multi_head_attention(net, weights, f"{prefix}.self_attention", y, heads)
    x = layers.add(net, y, x, f"{prefix}/attention_residual")
    y = layers.layer_norm(net, weights, f"{prefix}.ln_2", x, LN_EPS)
    y = layers.activation(net, layers.linear(net, weights, f"{prefix}.mlp.0", y, mlp_dim), "gelu", f"{prefix}.mlp.1")
    y = layers.rename(layers.linear(net, weights, f"{prefix}.mlp.3", y, x.shape[-1]), f"{prefix}.mlp")
    return layers.add(net, x, y, prefix)


class ViTModel(ClassifierModel):
    name = "vit"
    summary = "Vision Transformer B/16, B/32, L/16, L/32, H/14 (torchvision keys), ImageNet pre-processing, top-5."

    def add_arguments(self, parser):
        parser.add_argument("--variant", choices=sorted(VARIANTS),
                            help="random weights use it (default vit_b_16); with --weights it must agree")
        parser.add_argument("--num-classes", type=int, default=1000, help="classes of random weights (default 1000)")
        parser.add_argument("--heads", type=int,
                            help="attention heads, for widths that are not torchvision's (768: 12, 1024/1280: 16)")

    def crop_spec(self, config):
        return CropSpec.scaled(config["image_size"], ratio=RESIZE.get(config["variant"], 256) / 224)

    def random_module(self, args, seed):
        torch.manual_seed(seed)
        patch, dim, num_layers, heads, mlp_dim = VARIANTS[args.variant or "vit_b_16"]
        return randomize(VisionTransformer(224, patch, num_layers, heads, dim, mlp_dim, args.num_classes), seed).eval()

    def config_from_weights(self, weights, args):
        config = read_config(weights, weights.source, args.heads)
        spec = (config["patch"], config["dim"], config["num_layers"], config["heads"], config["mlp_dim"])
        variant = next((v for v, s in VARIANTS.items() if s == spec), "vit_custom")
        if args.variant and args.variant != variant:
            raise ValueError(f"--variant {args.variant} disagrees with {weights.source}, which holds a {variant}")
        return {"variant": variant, **config}

    def reference_module(self, config):
        c = config
        return VisionTransformer(c["image_size"], c["patch"], c["num_layers"], c["heads"], c["dim"], c["mlp_dim"],
                                 c["num_classes"])

    def input_shape(self, config):
        return (3, config["image_size"], config["image_size"])

    def define(self, net, weights, config, x):
        dim, patch = config["dim"], config["patch"]
        y = layers.conv2d(net, weights, "conv_proj", x, dim, patch, patch)
        tokens = net.add_shuffle(y)  # [N, D, h, w] -> [N, D, h*w] -> [N, h*w, D]
        tokens.reshape_dims = (0, dim, -1)
        tokens.second_transpose = (0, 2, 1)
        y = layers.named(tokens, "patch_tokens")
        class_token = weights.take("class_token", (1, 1, dim))
        y = layers.prepend_token(net, y, class_token, x, "class_token/concat")
        pos = layers.constant(net, weights.take("encoder.pos_embedding", (1, y.shape[1], dim),
                                                layers.weight_dtype(y)), "encoder.pos_embedding")
        y = layers.add(net, y, pos, "encoder.dropout")
        for i in range(config["num_layers"]):
            y = encoder_block(net, weights, f"encoder.layers.encoder_layer_{i}", y, config["heads"],
                              config["mlp_dim"])
        y = layers.layer_norm(net, weights, "encoder.ln", layers.rename(y, "encoder.layers"), LN_EPS)
        y = layers.token(net, layers.rename(y, "encoder"), 0, "class_token/output")
        return [layers.rename(layers.linear(net, weights, "heads.head", y, config["num_classes"]), "heads")]
