"""Inception v3 with torchvision's state_dict keys, written without torchvision.

299x299 input after a 342 short side (its own CropSpec); --input-size takes any size from 75 (the adaptive average
pooling at the end). BasicConv2d blocks (BatchNorm eps 0.001) and `transform_input` come from layers/inception.py,
shared with GoogLeNet. The auxiliary classifier `AuxLogits` runs only in training: its keys are accepted, not built.
Average pools inside the modules count the padding, as F.avg_pool2d does by default.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

import layers
from zoo.engine.classifier import ClassifierModel
from zoo.engine.model import randomize_batchnorm
from zoo.googlenet.model import BasicConv2d, add_transform_input_flag
from zoo.vision.imagenet import IMAGENET_MEAN, IMAGENET_STD, CropSpec

AUX = ("AuxLogits.",)
MIN_SIZE = 75
# Mixed_* modules: kind and arguments (in channels, and pool features for A, 7x7 channels for C)
MIXED = {"Mixed_5b": ("A", 192, 32), "Mixed_5c": ("A", 256, 64), "Mixed_5d": ("A", 288, 64), "Mixed_6a": ("B", 288),
         "Mixed_6b": ("C", 768, 128), "Mixed_6c": ("C", 768, 160), "Mixed_6d": ("C", 768, 160),
         "Mixed_6e": ("C", 768, 192), "Mixed_7a": ("D", 768), "Mixed_7b": ("E", 1280), "Mixed_7c": ("E", 2048)}
# Each branch: a list of (name, in, out, kernel, stride, padding); "pool" entries apply a pooling first.
BRANCHES = {
    "A": lambda cin, pool: [
        [("branch1x1", cin, 64, 1, 1, 0)],
        [("branch5x5_1", cin, 48, 1, 1, 0), ("branch5x5_2", 48, 64, 5, 1, 2)],
        [("branch3x3dbl_1", cin, 64, 1, 1, 0), ("branch3x3dbl_2", 64, 96, 3, 1, 1),
         ("branch3x3dbl_3", 96, 96, 3, 1, 1)],
        ["avg", ("branch_pool", cin, pool, 1, 1, 0)]],
    "B": lambda cin: [
        [("branch3x3", cin, 384, 3, 2, 0)],
        [("branch3x3dbl_1", cin, 64, 1, 1, 0), ("branch3x3dbl_2", 64, 96, 3, 1, 1),
         ("branch3x3dbl_3", 96, 96, 3, 2, 0)],
        ["max"]],
    "C": lambda cin, c7: [
        [("branch1x1", cin, 192, 1, 1, 0)],
        [("branch7x7_1", cin, c7, 1, 1, 0), ("branch7x7_2", c7, c7, (1, 7), 1, (0, 3)),
         ("branch7x7_3", c7, 192, (7, 1), 1, (3, 0))],
        [("branch7x7dbl_1", cin, c7, 1, 1, 0), ("branch7x7dbl_2", c7, c7, (7, 1), 1, (3, 0)),
         ("branch7x7dbl_3", c7, c7, (1, 7), 1, (0, 3)), ("branch7x7dbl_4", c7, c7, (7, 1), 1, (3, 0)),
         ("branch7x7dbl_5", c7, 192, (1, 7), 1, (0, 3))],
        ["avg", ("branch_pool", cin, 192, 1, 1, 0)]],
    "D": lambda cin: [
        [("branch3x3_1", cin, 192, 1, 1, 0), ("branch3x3_2", 192, 320, 3, 2, 0)],
        [("branch7x7x3_1", cin, 192, 1, 1, 0), ("branch7x7x3_2", 192, 192, (1, 7), 1, (0, 3)),
         ("branch7x7x3_3", 192, 192, (7, 1), 1, (3, 0)), ("branch7x7x3_4", 192, 192, 3, 2, 0)],
        ["max"]],
    "E": lambda cin: [
        [("branch1x1", cin, 320, 1, 1, 0)],
        [("branch3x3_1", cin, 384, 1, 1, 0), ("split", ("branch3x3_2a", 384, 384, (1, 3), 1, (0, 1)),
                                               ("branch3x3_2b", 384, 384, (3, 1), 1, (1, 0)))],
        [("branch3x3dbl_1", cin, 448, 1, 1, 0), ("branch3x3dbl_2", 448, 384, 3, 1, 1),
         ("split", ("branch3x3dbl_3a", 384, 384, (1, 3), 1, (0, 1)), ("branch3x3dbl_3b", 384, 384, (3, 1), 1, (1, 0)))],
        ["avg", ("branch_pool", cin, 192, 1, 1, 0)]],
}


class Mixed(nn.Module):
    """One of torchvision's InceptionA..E, spelled by BRANCHES: the module names are torchvision's attributes."""

    def __init__(self, kind, *args):
        super().__init__()
        self.branches = BRANCHES[kind](*args)
        for branch in self.branches:
            for step in branch:
                for name, cin, cout, k, s, p in _convs(step):
                    self.add_module(name, BasicConv2d(cin, cout, k, s, p))

    def forward(self, x):
        outs = []
        for branch in self.branches:
            y = x
            for step in branch:
                if step == "avg":
                    y = F.avg_pool2d(y, 3, 1, 1)
                elif step == "max":
                    y = F.max_pool2d(y, 3, 2)
                elif step[0] == "split":
                    y = torch.cat([getattr(self, step[1][0])(y), getattr(self, step[2][0])(y)], 1)
                else:
                    y = getattr(self, step[0])(y)
            outs.append(y)
        return torch.cat(outs, 1)


def _convs(step):
    if isinstance(step, str):
        return []
    return list(step[1:]) if step[0] == "split" else [step]


class InceptionAux(nn.Module):
    def __init__(self, cin, num_classes):
        super().__init__()
        self.conv0, self.conv1 = BasicConv2d(cin, 128, 1), BasicConv2d(128, 768, 5)
        self.fc = nn.Linear(768, num_classes)

    def forward(self, x):  # training only
        x = self.conv1(self.conv0(F.avg_pool2d(x, 5, 3)))
        return self.fc(torch.flatten(F.adaptive_avg_pool2d(x, (1, 1)), 1))


class Inception3(nn.Module):
    def __init__(self, num_classes=1000, aux_logits=True, transform_input=True):
        super().__init__()
        self.transform_input = transform_input
        self.Conv2d_1a_3x3 = BasicConv2d(3, 32, 3, 2)
        self.Conv2d_2a_3x3 = BasicConv2d(32, 32, 3)
        self.Conv2d_2b_3x3 = BasicConv2d(32, 64, 3, padding=1)
        self.maxpool1 = nn.MaxPool2d(3, 2)
        self.Conv2d_3b_1x1 = BasicConv2d(64, 80, 1)
        self.Conv2d_4a_3x3 = BasicConv2d(80, 192, 3)
        self.maxpool2 = nn.MaxPool2d(3, 2)
        for name, (kind, *args) in MIXED.items():
            setattr(self, name, Mixed(kind, *args))
            if name == "Mixed_6e":
                self.AuxLogits = InceptionAux(768, num_classes) if aux_logits else None
        self.avgpool = nn.AdaptiveAvgPool2d((1, 1))
        self.dropout = nn.Dropout(0.5)
        self.fc = nn.Linear(2048, num_classes)

    def forward(self, x):
        if self.transform_input:
            std, mean = torch.tensor(IMAGENET_STD), torch.tensor(IMAGENET_MEAN)
            x = x * (std / 0.5).view(1, 3, 1, 1) + ((mean - 0.5) / 0.5).view(1, 3, 1, 1)
        x = self.maxpool1(self.Conv2d_2b_3x3(self.Conv2d_2a_3x3(self.Conv2d_1a_3x3(x))))
        x = self.maxpool2(self.Conv2d_4a_3x3(self.Conv2d_3b_1x1(x)))
        for name in MIXED:
            x = getattr(self, name)(x)
        return self.fc(self.dropout(torch.flatten(self.avgpool(x), 1)))


def mixed(net, weights, prefix, x, kind, *args):
    outs = []
    for branch in BRANCHES[kind](*args):
        y = x
        for step in branch:
            if step == "avg":
                y = layers.avg_pool(net, y, f"{prefix}/avg_pool{len(outs)}", 3, 1, 1)
            elif step == "max":
                y = layers.max_pool(net, y, f"{prefix}/max_pool", 3, 2)
            elif step[0] == "split":
                parts = [_conv(net, weights, prefix, y, conv) for conv in step[1:]]
                y = layers.concat(net, parts, f"{prefix}/{step[1][0]}_concat")
            else:
                y = _conv(net, weights, prefix, y, step)
        outs.append(y)
    return layers.concat(net, outs, prefix)


def _conv(net, weights, prefix, x, spec):
    name, _cin, _cout, k, s, p = spec
    return layers.basic_conv2d(net, weights, f"{prefix}.{name}", x, k, s, p)


class InceptionModel(ClassifierModel):
    name = "inception"
    summary = "Inception v3 (torchvision keys), 299x299, ImageNet pre-processing 342/299, top-5 classification."

    def add_arguments(self, parser):
        parser.add_argument("--num-classes", type=int, default=1000, help="classes of random weights (default 1000)")
        parser.add_argument("--input-size", type=int, default=299,
                            help=f"input height and width, at least {MIN_SIZE} (default 299)")
        add_transform_input_flag(parser)

    def crop_spec(self, config):
        return CropSpec.scaled(config["input_size"], ratio=342 / 299)

    def random_module(self, args, seed):
        torch.manual_seed(seed)
        module = Inception3(args.num_classes, transform_input=args.transform_input == "on")
        randomize_batchnorm(module, torch.Generator().manual_seed(seed))
        return module.eval()

    def config_from_weights(self, weights, args):
        if "Conv2d_1a_3x3.conv.weight" not in weights or "Mixed_7c.branch_pool.conv.weight" not in weights:
            raise ValueError(f"{weights.source}: not Inception v3 weights (no 'Conv2d_1a_3x3.conv.weight' / "
                             f"'Mixed_7c.branch_pool.conv.weight' keys)")
        if args.input_size < MIN_SIZE:
            raise ValueError(f"--input-size {args.input_size} is below {MIN_SIZE}, the smallest Inception v3 takes")
        return {"variant": "inception_v3", "num_classes": weights.count("fc.bias"), "input_size": args.input_size,
                "aux_logits": "AuxLogits.fc.bias" in weights, "transform_input": args.transform_input == "on"}

    def reference_module(self, config):
        return Inception3(config["num_classes"], config["aux_logits"], config["transform_input"])

    def input_shape(self, config):
        return (3, config["input_size"], config["input_size"])

    def define(self, net, weights, config, x):
        layers.mark_auxiliary_used(weights, AUX)
        y = layers.transform_input(net, x, IMAGENET_MEAN, IMAGENET_STD) if config["transform_input"] else x
        y = layers.basic_conv2d(net, weights, "Conv2d_1a_3x3", y, 3, 2)
        y = layers.basic_conv2d(net, weights, "Conv2d_2a_3x3", y, 3)
        y = layers.basic_conv2d(net, weights, "Conv2d_2b_3x3", y, 3, 1, 1)
        y = layers.max_pool(net, y, "maxpool1", 3, 2)
        y = layers.basic_conv2d(net, weights, "Conv2d_3b_1x1", y, 1)
        y = layers.basic_conv2d(net, weights, "Conv2d_4a_3x3", y, 3)
        y = layers.max_pool(net, y, "maxpool2", 3, 2)
        for name, (kind, *args) in MIXED.items():
            y = mixed(net, weights, name, y, kind, *args)
        y = layers.flatten(net, layers.global_avg_pool(net, y, "avgpool"), "flatten")
        return [layers.linear(net, weights, "fc", y, config["num_classes"])]
