"""ConvNeXt tiny/small/base/large with torchvision's state_dict keys, written without torchvision.

Stage widths and block counts are read from the weights (`features.<2k+1>.<j>` keys, `features.<2k+1>.0.block.0`
value counts). A block is a 7x7 depthwise convolution, then channels-last LayerNorm, Linear, GELU (erf), Linear,
back to NCHW, times the learned layer scale; stochastic depth is the identity in eval. LayerNorm2d (stem,
downsampling, head) is channels-last LayerNorm between two transposes, as torchvision computes it. LayerNorm eps is
1e-6. Pre-processing follows torchvision's weights: crop 224 after a short side of 236 (tiny), 230 (small) or 232.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

import layers
from zoo.engine.classifier import ClassifierModel, add_classifier_flags
from zoo.engine.model import randomize_layer_norms
from zoo.vision.imagenet import CropSpec

LN_EPS = 1e-6
VARIANTS = {"convnext_tiny": ((96, 192, 384, 768), (3, 3, 9, 3)),
            "convnext_small": ((96, 192, 384, 768), (3, 3, 27, 3)),
            "convnext_base": ((128, 256, 512, 1024), (3, 3, 27, 3)),
            "convnext_large": ((192, 384, 768, 1536), (3, 3, 27, 3))}
RESIZE = {"convnext_tiny": 236, "convnext_small": 230}  # torchvision's transforms; 232 otherwise


class LayerNorm2d(nn.LayerNorm):
    def forward(self, x):
        return F.layer_norm(x.permute(0, 2, 3, 1), self.normalized_shape, self.weight, self.bias,
                            self.eps).permute(0, 3, 1, 2)


class Permute(nn.Module):
    def __init__(self, dims):
        super().__init__()
        self.dims = dims

    def forward(self, x):
        return x.permute(*self.dims)


class CNBlock(nn.Module):
    def __init__(self, dim):
        super().__init__()
        self.block = nn.Sequential(nn.Conv2d(dim, dim, 7, padding=3, groups=dim), Permute((0, 2, 3, 1)),
                                   nn.LayerNorm(dim, eps=LN_EPS), nn.Linear(dim, 4 * dim), nn.GELU(),
                                   nn.Linear(4 * dim, dim), Permute((0, 3, 1, 2)))
        self.layer_scale = nn.Parameter(torch.full((dim, 1, 1), 1e-6))
        self.stochastic_depth = nn.Identity()  # torchvision's StochasticDepth in eval

    def forward(self, x):
        return self.stochastic_depth(self.layer_scale * self.block(x)) + x


class ConvNeXt(nn.Module):
    def __init__(self, dims=(96, 192, 384, 768), depths=(3, 3, 9, 3), num_classes=1000):
        super().__init__()
        stages = [nn.Sequential(nn.Conv2d(3, dims[0], 4, 4), LayerNorm2d(dims[0], eps=LN_EPS))]
        for i, (dim, depth) in enumerate(zip(dims, depths)):
            stages.append(nn.Sequential(*(CNBlock(dim) for _ in range(depth))))
            if i < len(dims) - 1:
                stages.append(nn.Sequential(LayerNorm2d(dim, eps=LN_EPS), nn.Conv2d(dim, dims[i + 1], 2, 2)))
        self.features = nn.Sequential(*stages)
        self.avgpool = nn.AdaptiveAvgPool2d(1)
        self.classifier = nn.Sequential(LayerNorm2d(dims[-1], eps=LN_EPS), nn.Flatten(1),
                                        nn.Linear(dims[-1], num_classes))

    def forward(self, x):
        return self.classifier(self.avgpool(self.features(x)))


def randomize(module: nn.Module, seed: int) -> nn.Module:
    """Layer scales and LayerNorm affines away from their initial 1e-6 / ones / zeros, so that every block's
    residual branch and every normalisation parameter shows in validation."""
    generator = torch.Generator().manual_seed(seed)
    randomize_layer_norms(module, generator)
    for m in module.modules():
        if isinstance(m, CNBlock):
            with torch.no_grad():
                m.layer_scale.copy_(torch.rand(m.layer_scale.shape, generator=generator) * 0.5 + 0.25)
    return module


def read_config(weights, source: str) -> dict:
    if "features.0.0.weight" not in weights or "features.1.0.layer_scale" not in weights:
        raise ValueError(f"{source}: not ConvNeXt weights (no 'features.0.0.weight' / 'features.1.0.layer_scale' "
                         f"keys)")
    dims, depths = [], []
    while f"features.{2 * len(dims) + 1}.0.layer_scale" in weights:
        stage = 2 * len(dims) + 1
        dims.append(weights.count(f"features.{stage}.0.layer_scale"))
        n = 0
        while f"features.{stage}.{n}.layer_scale" in weights:
            n += 1
        depths.append(n)
    return {"dims": dims, "depths": depths, "num_classes": weights.count("classifier.2.bias")}


def cn_block(net, weights, prefix, x):
    dim = x.shape[1]
    y = layers.conv2d(net, weights, f"{prefix}.block.0", x, dim, 7, 1, 3, groups=dim)
    y = layers.transpose(net, y, (0, 2, 3, 1), f"{prefix}.block.1")
    y = layers.layer_norm(net, weights, f"{prefix}.block.2", y, LN_EPS)
    y = layers.linear(net, weights, f"{prefix}.block.3", y, 4 * dim)
    y = layers.activation(net, y, "gelu", f"{prefix}.block.4")
    y = layers.linear(net, weights, f"{prefix}.block.5", y, dim)
    y = layers.transpose(net, y, (0, 3, 1, 2), f"{prefix}.block")
    gamma = weights.take(f"{prefix}.layer_scale", (dim, 1, 1), layers.weight_dtype(x))
    scale = layers.constant(net, gamma.reshape(1, dim, 1, 1), f"{prefix}.layer_scale")
    y = layers.multiply(net, y, scale, f"{prefix}.stochastic_depth")
    return layers.add(net, y, x, prefix)


class ConvNeXtModel(ClassifierModel):
    name = "convnext"
    summary = "ConvNeXt tiny/small/base/large (torchvision keys), ImageNet pre-processing, top-5 classification."

    def add_arguments(self, parser):
        add_classifier_flags(parser, sorted(VARIANTS), "convnext_tiny", "a multiple of 32")

    def crop_spec(self, config):
        return CropSpec.scaled(config["input_size"], ratio=RESIZE.get(config["variant"], 232) / 224)

    def random_module(self, args, seed):
        torch.manual_seed(seed)
        dims, depths = VARIANTS[args.variant or "convnext_tiny"]
        return randomize(ConvNeXt(dims, depths, args.num_classes), seed).eval()

    def config_from_weights(self, weights, args):
        config = read_config(weights, weights.source)
        spec = (tuple(config["dims"]), tuple(config["depths"]))
        variant = next((v for v, s in VARIANTS.items() if s == spec), "convnext_custom")
        if args.variant and args.variant != variant:
            raise ValueError(f"--variant {args.variant} disagrees with {weights.source}, which holds a {variant}")
        if args.input_size % 32:
            raise ValueError(f"--input-size {args.input_size} is not a multiple of 32 (ConvNeXt's total stride)")
        return {"variant": variant, **config, "input_size": args.input_size}

    def reference_module(self, config):
        return ConvNeXt(config["dims"], config["depths"], config["num_classes"])

    def input_shape(self, config):
        return (3, config["input_size"], config["input_size"])

    def define(self, net, weights, config, x):
        dims, depths = config["dims"], config["depths"]
        y = layers.conv2d(net, weights, "features.0.0", x, dims[0], 4, 4)
        y = layers.layer_norm_2d(net, weights, "features.0.1", y, LN_EPS)
        layers.rename(y, "features.0")
        for i, (dim, depth) in enumerate(zip(dims, depths)):
            stage = 2 * i + 1
            for j in range(depth):
                y = cn_block(net, weights, f"features.{stage}.{j}", y)
            layers.rename(y, f"features.{stage}")
            if i < len(dims) - 1:
                y = layers.layer_norm_2d(net, weights, f"features.{stage + 1}.0", y, LN_EPS)
                y = layers.conv2d(net, weights, f"features.{stage + 1}.1", y, dims[i + 1], 2, 2)
                layers.rename(y, f"features.{stage + 1}")
        y = layers.global_avg_pool(net, layers.rename(y, "features"), "avgpool")
        y = layers.layer_norm_2d(net, weights, "classifier.0", y, LN_EPS)
        y = layers.flatten(net, y, "classifier.1")
        return [layers.rename(layers.linear(net, weights, "classifier.2", y, config["num_classes"]), "classifier")]
