"""ResNet-18/34/50/101/152, ResNeXt-50/101 and Wide ResNet-50/101 with torchvision's state_dict keys and shapes,
written without torchvision.

Everything is read from the weights: the depth (block type from `layer1.0.conv3`, block counts from the `layerN.M`
keys), and for bottleneck blocks the width of the first stage (`layer1.0.bn1`) and the groups of the 3x3 convolution
(from the value count of `layer1.0.conv2.weight`: width * width / groups * 9), hence ResNeXt's 32x4d and Wide ResNet's
width 128. Flags that disagree with the weights are errors naming both. Pre-processing is ImageNet's: shorter side
to 256, centre crop 224, RGB, /255, mean/std normalisation.
"""
from __future__ import annotations

import torch
from torch import nn

import layers
from zoo.engine.classifier import ClassifierModel
from zoo.engine.model import randomize_batchnorm
from zoo.engine.flags import bounded

BN_EPS = 1e-5  # torchvision's BatchNorm2d default
DEPTHS = {18: ("basic", (2, 2, 2, 2)), 34: ("basic", (3, 4, 6, 3)), 50: ("bottleneck", (3, 4, 6, 3)),
          101: ("bottleneck", (3, 4, 23, 3)), 152: ("bottleneck", (3, 8, 36, 3))}
EXPANSION = {"basic": 1, "bottleneck": 4}
# torchvision's named variants: depth, groups, width per group (the 3x3 width of stage 1 is groups * width per group)
VARIANTS = {f"resnet{d}": (d, 1, 64) for d in DEPTHS} | {
    "resnext50_32x4d": (50, 32, 4), "resnext101_32x8d": (101, 32, 8), "resnext101_64x4d": (101, 64, 4),
    "wide_resnet50_2": (50, 1, 128), "wide_resnet101_2": (101, 1, 128)}


def variant_name(depth: int, groups: int, width_per_group: int) -> str:
    for name, spec in VARIANTS.items():
        if spec == (depth, groups, width_per_group):
            return name
    return f"resnext{depth}_{groups}x{width_per_group}d"  # any other grouping reads as a ResNeXt


def _conv(cin, cout, k, stride=1):
    return nn.Conv2d(cin, cout, k, stride, k // 2, bias=False)


class BasicBlock(nn.Module):
    def __init__(self, cin, planes, stride, downsample):
        super().__init__()
        self.conv1, self.bn1 = _conv(cin, planes, 3, stride), nn.BatchNorm2d(planes)
        self.relu = nn.ReLU()
        self.conv2, self.bn2 = _conv(planes, planes, 3), nn.BatchNorm2d(planes)
        self.downsample = downsample

    def forward(self, x):
        y = self.relu(self.bn1(self.conv1(x)))
        y = self.bn2(self.conv2(y))
        return self.relu(y + (self.downsample(x) if self.downsample is not None else x))


class Bottleneck(nn.Module):
    def __init__(self, cin, planes, stride, downsample, groups=1, width_per_group=64):
        super().__init__()
        width = planes * width_per_group // 64 * groups
        self.conv1, self.bn1 = _conv(cin, width, 1), nn.BatchNorm2d(width)
        self.conv2 = nn.Conv2d(width, width, 3, stride, 1, groups=groups, bias=False)  # stride on the 3x3
        self.bn2 = nn.BatchNorm2d(width)
        self.conv3, self.bn3 = _conv(width, planes * 4, 1), nn.BatchNorm2d(planes * 4)
        self.relu = nn.ReLU()
        self.downsample = downsample

    def forward(self, x):
        y = self.relu(self.bn1(self.conv1(x)))
        y = self.relu(self.bn2(self.conv2(y)))
        y = self.bn3(self.conv3(y))
        return self.relu(y + (self.downsample(x) if self.downsample is not None else x))


class ResNet(nn.Module):
    def __init__(self, depth: int = 18, num_classes: int = 1000, groups: int = 1, width_per_group: int = 64):
        super().__init__()
        kind, counts = DEPTHS[depth]
        if kind == "basic" and (groups, width_per_group) != (1, 64):
            raise ValueError(f"ResNet-{depth} has basic blocks: groups 1 and width 64 only")
        extra = {} if kind == "basic" else {"groups": groups, "width_per_group": width_per_group}
        block, expansion = (BasicBlock if kind == "basic" else Bottleneck), EXPANSION[kind]
        self.conv1, self.bn1 = nn.Conv2d(3, 64, 7, 2, 3, bias=False), nn.BatchNorm2d(64)
        self.relu = nn.ReLU()
        self.maxpool = nn.MaxPool2d(3, 2, 1)
        cin = 64
        for stage, (planes, count) in enumerate(zip((64, 128, 256, 512), counts)):
            blocks = []
            for i in range(count):
                stride = 2 if stage > 0 and i == 0 else 1
                down = None
                if i == 0 and (stride != 1 or cin != planes * expansion):
                    down = nn.Sequential(_conv(cin, planes * expansion, 1, stride), nn.BatchNorm2d(planes * expansion))
                blocks.append(block(cin, planes, stride, down, **extra))
                cin = planes * expansion
            setattr(self, f"layer{stage + 1}", nn.Sequential(*blocks))
        self.avgpool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(512 * expansion, num_classes)

    def forward(self, x):
        x = self.maxpool(self.relu(self.bn1(self.conv1(x))))
        x = self.layer4(self.layer3(self.layer2(self.layer1(x))))
        return self.fc(torch.flatten(self.avgpool(x), 1))


def infer_depth(weights, source: str) -> tuple[int, int]:
    """(depth, num_classes) from the keys and value counts alone (so flat .wts work too)."""
    if "conv1.weight" not in weights or "layer1.0.conv1.weight" not in weights:
        raise ValueError(f"{source}: not ResNet weights (no 'conv1.weight' / 'layer1.0.conv1.weight' keys)")
    kind = "bottleneck" if "layer1.0.conv3.weight" in weights else "basic"
    counts = []
    for stage in range(1, 5):
        n = 0
        while f"layer{stage}.{n}.conv1.weight" in weights:
            n += 1
        counts.append(n)
    for depth, (k, c) in DEPTHS.items():
        if k == kind and tuple(counts) == c:
            num_classes = weights.count("fc.bias")
            return depth, num_classes
    raise ValueError(f"{source}: {kind} blocks {counts} per stage match no ResNet depth "
                     f"({', '.join(f'{d}: {DEPTHS[d]}' for d in DEPTHS)})")


def infer_grouping(weights, source: str) -> tuple[int, int]:
    """(groups, width per group) of bottleneck blocks, from value counts: stage 1's 3x3 is width x width/groups x 3x3
    with width = layer1.0.bn1's channel count. (1, 64) for basic blocks."""
    if "layer1.0.conv3.weight" not in weights:
        return 1, 64
    width = weights.count("layer1.0.bn1.weight")
    conv2 = weights.count("layer1.0.conv2.weight")
    if conv2 == 0 or (width * width * 9) % conv2 or width % (width * width * 9 // conv2):
        raise ValueError(f"{source}: 'layer1.0.conv2.weight' has {conv2} values, which no grouping of a "
                         f"{width}-channel 3x3 convolution gives")
    groups = width * width * 9 // conv2
    return groups, width // groups


class ResNetModel(ClassifierModel):
    name = "resnet"
    summary = ("ResNet-18/34/50/101/152, ResNeXt-50/101, Wide ResNet-50/101 (torchvision keys), ImageNet "
               "pre-processing, top-5 classification.")

    def add_arguments(self, parser):
        parser.add_argument("--variant", choices=sorted(VARIANTS),
                            help="random weights use it (default resnet18, or --depth); with --weights it must agree")
        parser.add_argument("--depth", type=int, choices=sorted(DEPTHS),
                            help="ResNet depth; random weights use it (default 18); with --weights it must agree")
        parser.add_argument("--num-classes", type=bounded(int, 1, 1_000_000),
                            help="classes of random weights (default 1000); with --weights it must agree")
        parser.add_argument("--input-size", type=bounded(int, 32, 8192), default=224,
                            help="input height and width (default 224)")

    @staticmethod
    def _requested(args) -> tuple[int, int, int] | None:
        """(depth, groups, width per group) that the flags ask for, or None."""
        variant = getattr(args, "variant", None)
        if variant:
            spec = VARIANTS[variant]
            if args.depth and args.depth != spec[0]:
                raise ValueError(f"--depth {args.depth} disagrees with --variant {variant} (depth {spec[0]})")
            return spec
        return (args.depth, 1, 64) if args.depth else None

    def random_module(self, args, seed):
        generator = torch.Generator().manual_seed(seed)
        torch.manual_seed(seed)
        depth, groups, width = self._requested(args) or (18, 1, 64)
        module = ResNet(depth, args.num_classes or 1000, groups, width)
        randomize_batchnorm(module, generator)
        return module.eval()

    def config_from_weights(self, weights, args):
        depth, num_classes = infer_depth(weights, weights.source)
        groups, width = infer_grouping(weights, weights.source)
        variant = variant_name(depth, groups, width)
        if getattr(args, "variant", None) and args.variant != variant:
            raise ValueError(f"--variant {args.variant} disagrees with {weights.source}, which holds a {variant}")
        if args.depth and args.depth != depth:
            raise ValueError(f"--depth {args.depth} disagrees with {weights.source}, which holds a ResNet-{depth}")
        if getattr(args, "num_classes", None) and args.num_classes != num_classes:
            raise ValueError(f"--num-classes {args.num_classes} disagrees with {weights.source}, which has "
                             f"{num_classes} classes")
        if args.input_size % 32:
            raise ValueError(f"--input-size {args.input_size} is not a multiple of 32 (ResNet's total stride)")
        return {"variant": variant, "depth": depth, "groups": groups, "width_per_group": width,
                "num_classes": num_classes, "input_size": args.input_size}

    def reference_module(self, config):
        return ResNet(config["depth"], config["num_classes"], config.get("groups", 1),
                      config.get("width_per_group", 64))

    def input_shape(self, config):
        return (3, config["input_size"], config["input_size"])

    def define(self, net, weights, config, x):
        kind, counts = DEPTHS[config["depth"]]
        y = layers.conv_bn(net, weights, "conv1", "bn1", x, 64, 7, 2, 3, eps=BN_EPS)
        y = layers.activation(net, y, "relu", "relu")
        y = layers.max_pool(net, y, "maxpool", 3, 2, 1)
        groups = config.get("groups", 1)
        for stage, (planes, count) in enumerate(zip((64, 128, 256, 512), counts)):
            for i in range(count):
                prefix, stride = f"layer{stage + 1}.{i}", 2 if stage > 0 and i == 0 else 1
                if kind == "basic":
                    y = basic_block(net, weights, prefix, y, planes, stride)
                else:
                    y = bottleneck_block(net, weights, prefix, y, planes, stride, groups)
            layers.rename(y, f"layer{stage + 1}")
        y = layers.flatten(net, layers.global_avg_pool(net, y, "avgpool"), "flatten")
        return [layers.linear(net, weights, "fc", y, config["num_classes"])]



def _conv_bn(net, weights, prefix, x, cout, k, stride, index=1, groups=1):
    return layers.conv_bn(net, weights, f"{prefix}.conv{index}", f"{prefix}.bn{index}", x, cout, k, stride, k // 2,
                          groups, eps=BN_EPS)


def _shortcut(net, weights, prefix, x, cout, stride):
    if f"{prefix}.downsample.0.weight" not in weights:
        return x
    y = layers.conv_bn(net, weights, f"{prefix}.downsample.0", f"{prefix}.downsample.1", x, cout, 1, stride, 0,
                       eps=BN_EPS)
    return layers.rename(y, f"{prefix}.downsample")


def basic_block(net, weights, prefix, x, planes, stride):
    """conv3x3-bn-relu, conv3x3-bn, + shortcut, relu. The one nn.ReLU module is called twice: relu, relu#2."""
    y = layers.activation(net, _conv_bn(net, weights, prefix, x, planes, 3, stride), "relu", f"{prefix}.relu")
    y = _conv_bn(net, weights, prefix, y, planes, 3, 1, index=2)
    y = layers.add(net, y, _shortcut(net, weights, prefix, x, planes, stride), f"{prefix}/add")
    return layers.activation(net, y, "relu", prefix)


def bottleneck_block(net, weights, prefix, x, planes, stride, groups=1):
    """1x1, 3x3 (with the stride, in `groups` groups), 1x1 x4, + shortcut; relu after each: relu, relu#2, relu#3.
    The 3x3 width (planes for ResNet, wider for ResNeXt and Wide ResNet) is the weights' bn1 channel count."""
    width = weights.count(f"{prefix}.bn1.weight")
    y = layers.activation(net, _conv_bn(net, weights, prefix, x, width, 1, 1), "relu", f"{prefix}.relu")
    y = layers.activation(net, _conv_bn(net, weights, prefix, y, width, 3, stride, index=2, groups=groups), "relu",
                          f"{prefix}.relu#2")
    y = _conv_bn(net, weights, prefix, y, planes * 4, 1, 1, index=3)
    y = layers.add(net, y, _shortcut(net, weights, prefix, x, planes * 4, stride), f"{prefix}/add")
    return layers.activation(net, y, "relu", prefix)
