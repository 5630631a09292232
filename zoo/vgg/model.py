"""VGG-11/13/16/19, with and without BatchNorm, with torchvision's state_dict keys, written without torchvision.

The layout is read from the weights: `features.<i>` keys are convolutions (BatchNorm ones hold `running_mean`),
their channel counts are bias value counts, and a gap of one index between a convolution block and the next is a
max pool (the last one, after the final block, holds no weights: every VGG ends with one). The classifier's hidden
width and the class count are read the same way. So reduced-width VGGs with torchvision's keys load too.
"""
from __future__ import annotations

import torch
from torch import nn

import layers
from zoo.engine.classifier import ClassifierModel, add_classifier_flags
from zoo.engine.model import randomize_batchnorm

BN_EPS = 1e-5
POOL = "M"
LAYOUTS = {  # torchvision's configurations A, B, D, E
    11: [64, POOL, 128, POOL, 256, 256, POOL, 512, 512, POOL, 512, 512, POOL],
    13: [64, 64, POOL, 128, 128, POOL, 256, 256, POOL, 512, 512, POOL, 512, 512, POOL],
    16: [64, 64, POOL, 128, 128, POOL, 256, 256, 256, POOL, 512, 512, 512, POOL, 512, 512, 512, POOL],
    19: [64, 64, POOL, 128, 128, POOL, 256, 256, 256, 256, POOL, 512, 512, 512, 512, POOL, 512, 512, 512, 512, POOL],
}
VARIANTS = {f"vgg{d}{bn}": (d, bool(bn)) for d in LAYOUTS for bn in ("", "_bn")}
POOLED = 7  # AdaptiveAvgPool2d((7, 7)) before the classifier


class VGG(nn.Module):
    def __init__(self, layout: list, batch_norm: bool, hidden: int = 4096, num_classes: int = 1000):
        super().__init__()
        modules, cin = [], 3
        for item in layout:
            if item == POOL:
                modules.append(nn.MaxPool2d(2, 2))
                continue
            modules.append(nn.Conv2d(cin, item, 3, padding=1))
            modules += [nn.BatchNorm2d(item), nn.ReLU()] if batch_norm else [nn.ReLU()]
            cin = item
        self.features = nn.Sequential(*modules)
        self.avgpool = nn.AdaptiveAvgPool2d((POOLED, POOLED))
        self.classifier = nn.Sequential(nn.Linear(cin * POOLED * POOLED, hidden), nn.ReLU(), nn.Dropout(),
                                        nn.Linear(hidden, hidden), nn.ReLU(), nn.Dropout(),
                                        nn.Linear(hidden, num_classes))

    def forward(self, x):
        return self.classifier(torch.flatten(self.avgpool(self.features(x)), 1))


def read_layout(weights, source: str) -> tuple[list, bool]:
    """(layout, batch_norm) from keys and value counts alone."""
    if "features.0.weight" not in weights or "classifier.6.bias" not in weights:
        raise ValueError(f"{source}: not VGG weights (no 'features.0.weight' / 'classifier.6.bias' keys)")
    batch_norm = "features.1.running_mean" in weights
    step = 3 if batch_norm else 2  # conv, [bn,] relu
    layout, i = [], 0
    while True:
        if f"features.{i}.bias" in weights:
            layout.append(weights.count(f"features.{i}.bias"))
            i += step
        elif f"features.{i + 1}.bias" in weights:
            layout.append(POOL)
            i += 1
        else:
            break
    return layout + [POOL], batch_norm


def variant_of(layout: list, batch_norm: bool) -> str:
    pattern = [POOL if item == POOL else 0 for item in layout]
    for depth, standard in LAYOUTS.items():
        if pattern == [POOL if item == POOL else 0 for item in standard]:
            return f"vgg{depth}{'_bn' if batch_norm else ''}" + ("" if layout == standard else "_custom_width")
    raise ValueError(f"the weights' layout {layout} is none of VGG-11/13/16/19")


class VGGModel(ClassifierModel):
    name = "vgg"
    summary = "VGG-11/13/16/19 with and without BatchNorm (torchvision keys), ImageNet pre-processing, top-5."

    def add_arguments(self, parser):
        add_classifier_flags(parser, sorted(VARIANTS), "vgg11",
                             "at least 32; the adaptive 7x7 pooling takes any size")

    def random_module(self, args, seed):
        torch.manual_seed(seed)
        depth, batch_norm = VARIANTS[args.variant or "vgg11"]
        module = VGG(LAYOUTS[depth], batch_norm, num_classes=args.num_classes)
        randomize_batchnorm(module, torch.Generator().manual_seed(seed))
        return module.eval()

    def config_from_weights(self, weights, args):
        layout, batch_norm = read_layout(weights, weights.source)
        variant = variant_of(layout, batch_norm)
        if args.variant and variant.removesuffix("_custom_width") != args.variant:
            raise ValueError(f"--variant {args.variant} disagrees with {weights.source}, which holds a {variant}")
        if args.input_size < 32:
            raise ValueError(f"--input-size {args.input_size} is below 32 (VGG pools five times by 2)")
        return {"variant": variant, "layout": layout, "batch_norm": batch_norm,
                "hidden": weights.count("classifier.0.bias"), "num_classes": weights.count("classifier.6.bias"),
                "input_size": args.input_size}

    def reference_module(self, config):
        return VGG(config["layout"], config["batch_norm"], config["hidden"], config["num_classes"])

    def input_shape(self, config):
        return (3, config["input_size"], config["input_size"])

    def define(self, net, weights, config, x):
        y, i = x, 0
        for item in config["layout"]:
            if item == POOL:
                y = layers.max_pool(net, y, f"features.{i}", 2, 2)
                i += 1
            elif config["batch_norm"]:
                y = layers.conv_bn(net, weights, f"features.{i}", f"features.{i + 1}", y, item, 3, 1, 1,
                                   eps=BN_EPS, bias=True)
                y = layers.activation(net, y, "relu", f"features.{i + 2}")
                i += 3
            else:
                y = layers.conv2d(net, weights, f"features.{i}", y, item, 3, 1, 1)
                y = layers.activation(net, y, "relu", f"features.{i + 1}")
                i += 2
        return [layers.vgg_head(net, weights, layers.rename(y, "features"), POOLED, config["hidden"],
                                config["num_classes"])]

