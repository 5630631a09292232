"""AlexNet (torchvision's one-tower version) with torchvision's state_dict keys, written without torchvision.

Channel counts of the five convolutions, the classifier's hidden width and the class count are read from the
weights' value counts (so reduced-width AlexNets with torchvision's keys load too); kernels, strides and pooling
are the architecture's. The head is VGG's (layers.vgg_head) with 6x6 pooling and the dropouts first.
"""
from __future__ import annotations

import torch
from torch import nn

import layers
from zoo.engine.classifier import ClassifierModel, add_classifier_flags

# features.<index>: (kernel, stride, padding) of each convolution; max pools (3, stride 2) after 0, 3 and 10
CONVS = {0: (11, 4, 2), 3: (5, 1, 2), 6: (3, 1, 1), 8: (3, 1, 1), 10: (3, 1, 1)}
POOLS_AFTER = {0: 2, 3: 5, 10: 12}  # conv index -> index of the max pool that follows its ReLU
CHANNELS = (64, 192, 384, 256, 256)
POOLED = 6


class AlexNet(nn.Module):
    def __init__(self, channels=CHANNELS, hidden: int = 4096, num_classes: int = 1000):
        super().__init__()
        modules, cin = [], 3
        for (index, (k, s, p)), cout in zip(CONVS.items(), channels):
            modules += [nn.Conv2d(cin, cout, k, s, p), nn.ReLU()]
            if index in POOLS_AFTER:
                modules.append(nn.MaxPool2d(3, 2))
            cin = cout
        self.features = nn.Sequential(*modules)
        self.avgpool = nn.AdaptiveAvgPool2d((POOLED, POOLED))
        self.classifier = nn.Sequential(nn.Dropout(), nn.Linear(cin * POOLED * POOLED, hidden), nn.ReLU(),
                                        nn.Dropout(), nn.Linear(hidden, hidden), nn.ReLU(),
                                        nn.Linear(hidden, num_classes))

    def forward(self, x):
        return self.classifier(torch.flatten(self.avgpool(self.features(x)), 1))


class AlexNetModel(ClassifierModel):
    name = "alexnet"
    summary = "AlexNet (torchvision keys), ImageNet pre-processing, top-5 classification."

    def add_arguments(self, parser):
        add_classifier_flags(parser, (), None, "at least 63; the adaptive 6x6 pooling takes any size")

    def random_module(self, args, seed):
        torch.manual_seed(seed)
        return AlexNet(num_classes=args.num_classes).eval()

    def config_from_weights(self, weights, args):
        keys = [f"features.{i}.bias" for i in CONVS] + ["classifier.1.bias", "classifier.6.bias"]
        missing = [k for k in keys if k not in weights]
        if missing:
            raise ValueError(f"{weights.source}: not AlexNet weights (no {missing[0]!r} key)")
        if args.input_size < 63:
            raise ValueError(f"--input-size {args.input_size} is below 63, the smallest AlexNet's pooling takes")
        channels = [weights.count(f"features.{i}.bias") for i in CONVS]
        return {"variant": "alexnet" if tuple(channels) == CHANNELS else "alexnet_custom_width",
                "channels": channels, "hidden": weights.count("classifier.1.bias"),
                "num_classes": weights.count("classifier.6.bias"), "input_size": args.input_size}

    def reference_module(self, config):
        return AlexNet(config["channels"], config["hidden"], config["num_classes"])

    def input_shape(self, config):
        return (3, config["input_size"], config["input_size"])

    def define(self, net, weights, config, x):
        y = x
        for (index, (k, s, p)), cout in zip(CONVS.items(), config["channels"]):
            y = layers.conv2d(net, weights, f"features.{index}", y, cout, k, s, p)
            y = layers.activation(net, y, "relu", f"features.{index + 1}")
            if index in POOLS_AFTER:
                y = layers.max_pool(net, y, f"features.{POOLS_AFTER[index]}", 3, 2)
        return [layers.vgg_head(net, weights, layers.rename(y, "features"), POOLED, config["hidden"],
                                config["num_classes"], dense=(1, 4, 6))]
