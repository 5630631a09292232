"""GoogLeNet (Inception v1) with torchvision's state_dict keys, written without torchvision.

torchvision's version: BatchNorm after every convolution (eps 0.001), a 3x3 (not 5x5) convolution in the third
branch of each Inception module, ceil-mode max pools, no LRN. The auxiliary classifiers `aux1`/`aux2` only run in
training; their keys are accepted when present (torchvision's file has them) and not built. `transform_input`
(torchvision's default for the trained weights) is a flag, stored in the engine's configuration. Channel counts are
read from the weights' convolutions (layers.basic_conv2d), which folded weights have too.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

import layers
from zoo.engine.classifier import ClassifierModel
from zoo.engine.model import randomize_batchnorm
from zoo.vision.imagenet import IMAGENET_MEAN, IMAGENET_STD

# in, 1x1, 3x3 reduce, 3x3, "5x5" reduce, "5x5" (a 3x3 in torchvision), pool projection
INCEPTIONS = {"inception3a": (192, 64, 96, 128, 16, 32, 32), "inception3b": (256, 128, 128, 192, 32, 96, 64),
              "inception4a": (480, 192, 96, 208, 16, 48, 64), "inception4b": (512, 160, 112, 224, 24, 64, 64),
              "inception4c": (512, 128, 128, 256, 24, 64, 64), "inception4d": (512, 112, 144, 288, 32, 64, 64),
              "inception4e": (528, 256, 160, 320, 32, 128, 128), "inception5a": (832, 256, 160, 320, 32, 128, 128),
              "inception5b": (832, 384, 192, 384, 48, 128, 128)}
POOL_AFTER = {"inception3b": ("maxpool3", 3), "inception4e": ("maxpool4", 2)}
AUX = ("aux1.", "aux2.")


class BasicConv2d(nn.Module):
    def __init__(self, cin, cout, kernel, stride=1, padding=0):
        super().__init__()
        self.conv = nn.Conv2d(cin, cout, kernel, stride, padding, bias=False)
        self.bn = nn.BatchNorm2d(cout, eps=layers.inception.INCEPTION_BN_EPS)

    def forward(self, x):
        return F.relu(self.bn(self.conv(x)))


class Inception(nn.Module):
    def __init__(self, cin, c1, c3r, c3, c5r, c5, pool):
        super().__init__()
        self.branch1 = BasicConv2d(cin, c1, 1)
        self.branch2 = nn.Sequential(BasicConv2d(cin, c3r, 1), BasicConv2d(c3r, c3, 3, padding=1))
        self.branch3 = nn.Sequential(BasicConv2d(cin, c5r, 1), BasicConv2d(c5r, c5, 3, padding=1))
        self.branch4 = nn.Sequential(nn.MaxPool2d(3, 1, 1, ceil_mode=True), BasicConv2d(cin, pool, 1))

    def forward(self, x):
        return torch.cat([self.branch1(x), self.branch2(x), self.branch3(x), self.branch4(x)], 1)


class InceptionAux(nn.Module):
    def __init__(self, cin, num_classes):
        super().__init__()
        self.conv = BasicConv2d(cin, 128, 1)
        self.fc1, self.fc2 = nn.Linear(2048, 1024), nn.Linear(1024, num_classes)

    def forward(self, x):  # training only
        x = torch.flatten(self.conv(F.adaptive_avg_pool2d(x, (4, 4))), 1)
        return self.fc2(F.dropout(F.relu(self.fc1(x)), 0.7, self.training))


class GoogLeNet(nn.Module):
    def __init__(self, num_classes=1000, aux_logits=True, transform_input=True):
        super().__init__()
        self.transform_input = transform_input
        self.conv1 = BasicConv2d(3, 64, 7, 2, 3)
        self.maxpool1 = nn.MaxPool2d(3, 2, ceil_mode=True)
        self.conv2 = BasicConv2d(64, 64, 1)
        self.conv3 = BasicConv2d(64, 192, 3, padding=1)
        self.maxpool2 = nn.MaxPool2d(3, 2, ceil_mode=True)
        for name, spec in INCEPTIONS.items():
            setattr(self, name, Inception(*spec))
            if name in POOL_AFTER:
                pool, k = POOL_AFTER[name]
                setattr(self, pool, nn.MaxPool2d(k, 2, ceil_mode=True))
        self.aux1 = InceptionAux(512, num_classes) if aux_logits else None
        self.aux2 = InceptionAux(528, num_classes) if aux_logits else None
        self.avgpool = nn.AdaptiveAvgPool2d((1, 1))
        self.dropout = nn.Dropout(0.2)
        self.fc = nn.Linear(1024, num_classes)

    def forward(self, x):
        if self.transform_input:
            std, mean = torch.tensor(IMAGENET_STD), torch.tensor(IMAGENET_MEAN)
            x = x * (std / 0.5).view(1, 3, 1, 1) + ((mean - 0.5) / 0.5).view(1, 3, 1, 1)
        x = self.maxpool2(self.conv3(self.conv2(self.maxpool1(self.conv1(x)))))
        for name in INCEPTIONS:
            x = getattr(self, name)(x)
            if name in POOL_AFTER:
                x = getattr(self, POOL_AFTER[name][0])(x)
        return self.fc(self.dropout(torch.flatten(self.avgpool(x), 1)))


def inception(net, weights, prefix, x):
    b1 = layers.basic_conv2d(net, weights, f"{prefix}.branch1", x, 1)
    b2 = layers.basic_conv2d(net, weights, f"{prefix}.branch2.0", x, 1)
    b2 = layers.rename(layers.basic_conv2d(net, weights, f"{prefix}.branch2.1", b2, 3, 1, 1), f"{prefix}.branch2")
    b3 = layers.basic_conv2d(net, weights, f"{prefix}.branch3.0", x, 1)
    b3 = layers.rename(layers.basic_conv2d(net, weights, f"{prefix}.branch3.1", b3, 3, 1, 1), f"{prefix}.branch3")
    b4 = layers.max_pool(net, x, f"{prefix}.branch4.0", 3, 1, 1, ceil_mode=True)
    b4 = layers.rename(layers.basic_conv2d(net, weights, f"{prefix}.branch4.1", b4, 1), f"{prefix}.branch4")
    return layers.concat(net, [b1, b2, b3, b4], prefix)


def add_transform_input_flag(parser):
    parser.add_argument("--transform-input", choices=("on", "off"), default="on",
                        help="on (torchvision's setting for the trained ImageNet weights): map ImageNet-normalised "
                             "input to the (x - 0.5) / 0.5 range the ported weights expect, inside the network")


class GoogLeNetModel(ClassifierModel):
    name = "googlenet"
    summary = "GoogLeNet (torchvision keys), ImageNet pre-processing, top-5 classification."

    def add_arguments(self, parser):
        parser.add_argument("--num-classes", type=int, default=1000, help="classes of random weights (default 1000)")
        parser.add_argument("--input-size", type=int, default=224, help="input height and width (default 224)")
        add_transform_input_flag(parser)

    def random_module(self, args, seed):
        torch.manual_seed(seed)
        module = GoogLeNet(args.num_classes, transform_input=args.transform_input == "on")
        randomize_batchnorm(module, torch.Generator().manual_seed(seed))
        return module.eval()

    def config_from_weights(self, weights, args):
        if "conv1.conv.weight" not in weights or "inception5b.branch4.1.conv.weight" not in weights:
            raise ValueError(f"{weights.source}: not GoogLeNet weights (no 'conv1.conv.weight' / "
                             f"'inception5b.branch4.1.conv.weight' keys)")
        if args.input_size < 32:
            raise ValueError(f"--input-size {args.input_size} is below 32 (GoogLeNet pools five times by 2)")
        return {"variant": "googlenet", "num_classes": weights.count("fc.bias"), "input_size": args.input_size,
                "aux_logits": "aux1.fc2.bias" in weights, "transform_input": args.transform_input == "on"}

    def reference_module(self, config):
        return GoogLeNet(config["num_classes"], config["aux_logits"], config["transform_input"])

    def input_shape(self, config):
        return (3, config["input_size"], config["input_size"])

    def define(self, net, weights, config, x):
        layers.mark_auxiliary_used(weights, AUX)
        y = layers.transform_input(net, x, IMAGENET_MEAN, IMAGENET_STD) if config["transform_input"] else x
        y = layers.basic_conv2d(net, weights, "conv1", y, 7, 2, 3)
        y = layers.max_pool(net, y, "maxpool1", 3, 2, ceil_mode=True)
        y = layers.basic_conv2d(net, weights, "conv2", y, 1)
        y = layers.basic_conv2d(net, weights, "conv3", y, 3, 1, 1)
        y = layers.max_pool(net, y, "maxpool2", 3, 2, ceil_mode=True)
        for name in INCEPTIONS:
            y = inception(net, weights, name, y)
            if name in POOL_AFTER:
                pool, k = POOL_AFTER[name]
                y = layers.max_pool(net, y, pool, k, 2, ceil_mode=True)
        y = layers.flatten(net, layers.global_avg_pool(net, y, "avgpool"), "flatten")
        return [layers.linear(net, weights, "fc", y, config["num_classes"])]
