"""SqueezeNet 1.0 and 1.1 with torchvision's state_dict keys, written without torchvision.

The version is read from the weights (1.0's first convolution is 96 x 7x7, 1.1's 64 x 3x3), the class count from the
final 1x1 convolution. Max pools use ceil mode (TensorRT's EXPLICIT_ROUND_UP padding mode). The classifier is a
1x1 convolution, ReLU and global average pooling, so any input size of at least 33 works (--input-size).
"""
from __future__ import annotations

import torch
from torch import nn

import layers
from zoo.engine.classifier import ClassifierModel, add_classifier_flags

POOL = "M"
# (first conv: channels, kernel), then features.<i> from 3 on: Fire (squeeze, expand1x1, expand3x3) or max pool
LAYOUTS = {
    "squeezenet1_0": ((96, 7), [(16, 64, 64), (16, 64, 64), (32, 128, 128), POOL, (32, 128, 128), (48, 192, 192),
                                (48, 192, 192), (64, 256, 256), POOL, (64, 256, 256)]),
    "squeezenet1_1": ((64, 3), [(16, 64, 64), (16, 64, 64), POOL, (32, 128, 128), (32, 128, 128), POOL,
                                (48, 192, 192), (48, 192, 192), (64, 256, 256), (64, 256, 256)]),
}


class Fire(nn.Module):
    def __init__(self, cin, squeeze, expand1x1, expand3x3):
        super().__init__()
        self.squeeze, self.squeeze_activation = nn.Conv2d(cin, squeeze, 1), nn.ReLU()
        self.expand1x1, self.expand1x1_activation = nn.Conv2d(squeeze, expand1x1, 1), nn.ReLU()
        self.expand3x3, self.expand3x3_activation = nn.Conv2d(squeeze, expand3x3, 3, padding=1), nn.ReLU()

    def forward(self, x):
        x = self.squeeze_activation(self.squeeze(x))
        return torch.cat([self.expand1x1_activation(self.expand1x1(x)), self.expand3x3_activation(self.expand3x3(x))],
                         1)


class SqueezeNet(nn.Module):
    def __init__(self, version: str = "squeezenet1_0", num_classes: int = 1000):
        super().__init__()
        (c0, k0), fires = LAYOUTS[version]
        modules, cin = [nn.Conv2d(3, c0, k0, 2), nn.ReLU(), nn.MaxPool2d(3, 2, ceil_mode=True)], c0
        for item in fires:
            if item == POOL:
                modules.append(nn.MaxPool2d(3, 2, ceil_mode=True))
            else:
                modules.append(Fire(cin, *item))
                cin = item[1] + item[2]
        self.features = nn.Sequential(*modules)
        self.classifier = nn.Sequential(nn.Dropout(0.5), nn.Conv2d(cin, num_classes, 1), nn.ReLU(),
                                        nn.AdaptiveAvgPool2d((1, 1)))

    def forward(self, x):
        return torch.flatten(self.classifier(self.features(x)), 1)


def fire(net, weights, prefix, x, squeeze, expand1x1, expand3x3):
    y = layers.conv2d(net, weights, f"{prefix}.squeeze", x, squeeze, 1)
    y = layers.activation(net, y, "relu", f"{prefix}.squeeze_activation")
    left = layers.activation(net, layers.conv2d(net, weights, f"{prefix}.expand1x1", y, expand1x1, 1), "relu",
                             f"{prefix}.expand1x1_activation")
    right = layers.activation(net, layers.conv2d(net, weights, f"{prefix}.expand3x3", y, expand3x3, 3, 1, 1), "relu",
                              f"{prefix}.expand3x3_activation")
    return layers.concat(net, [left, right], prefix)


class SqueezeNetModel(ClassifierModel):
    name = "squeezenet"
    summary = "SqueezeNet 1.0/1.1 (torchvision keys), ImageNet pre-processing, top-5 classification."

    def add_arguments(self, parser):
        add_classifier_flags(parser, sorted(LAYOUTS), "squeezenet1_0")

    def random_module(self, args, seed):
        torch.manual_seed(seed)
        return SqueezeNet(args.variant or "squeezenet1_0", args.num_classes).eval()

    def config_from_weights(self, weights, args):
        if "features.0.weight" not in weights or "classifier.1.bias" not in weights:
            raise ValueError(f"{weights.source}: not SqueezeNet weights (no 'features.0.weight' / "
                             f"'classifier.1.bias' keys)")
        first = weights.count("features.0.weight")
        found = [v for v, ((c, k), _) in LAYOUTS.items() if first == c * 3 * k * k]
        if not found:
            raise ValueError(f"{weights.source}: 'features.0.weight' has {first} values, neither SqueezeNet 1.0's "
                             f"96x3x7x7 nor 1.1's 64x3x3x3")
        if args.variant and args.variant != found[0]:
            raise ValueError(f"--variant {args.variant} disagrees with {weights.source}, which holds a {found[0]}")
        if args.input_size < 33:
            raise ValueError(f"--input-size {args.input_size} is below 33, the smallest SqueezeNet's pooling takes")
        return {"variant": found[0], "num_classes": weights.count("classifier.1.bias"), "input_size": args.input_size}

    def reference_module(self, config):
        return SqueezeNet(config["variant"], config["num_classes"])

    def input_shape(self, config):
        return (3, config["input_size"], config["input_size"])

    def define(self, net, weights, config, x):
        (c0, k0), fires = LAYOUTS[config["variant"]]
        y = layers.activation(net, layers.conv2d(net, weights, "features.0", x, c0, k0, 2), "relu", "features.1")
        y = layers.max_pool(net, y, "features.2", 3, 2, ceil_mode=True)
        for index, item in enumerate(fires, start=3):
            if item == POOL:
                y = layers.max_pool(net, y, f"features.{index}", 3, 2, ceil_mode=True)
            else:
                y = fire(net, weights, f"features.{index}", y, *item)
        y = layers.conv2d(net, weights, "classifier.1", layers.rename(y, "features"), config["num_classes"], 1)
        y = layers.activation(net, y, "relu", "classifier.2")
        y = layers.rename(layers.global_avg_pool(net, y, "classifier.3"), "classifier")
        return [layers.flatten(net, y, "flatten")]
