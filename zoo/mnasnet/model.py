"""MNASNet 0.5 / 0.75 / 1.0 / 1.3 with torchvision's state_dict keys and shapes, written without torchvision.

`layers` is one Sequential: a 3x3 stem, a depthwise-separable block, six stacks of inverted residuals (ReLU, no
squeeze-excitation), a 1x1 conv to 1280; then the spatial mean and `classifier.1`. The width multiplier is read
from the weights (the stem's channels); kernel sizes and expansions follow from the shapes, strides are the
architecture's.
"""
from __future__ import annotations

import torch
from torch import nn

from layers import core, mobile
from zoo.engine.classifier import ClassifierModel, add_classifier_flags, check_stride_32, check_variant
from zoo.engine.model import randomize_batchnorm

ALPHAS = {"mnasnet0_5": 0.5, "mnasnet0_75": 0.75, "mnasnet1_0": 1.0, "mnasnet1_3": 1.3}
BASE_DEPTHS = (32, 16, 24, 40, 80, 96, 192, 320)
# the six stacks: (kernel, first stride, expansion, repeats); stack k maps depths[k + 1] -> depths[k + 2]
STACKS = ((3, 2, 3, 3), (5, 2, 3, 3), (5, 2, 6, 3), (3, 1, 6, 2), (5, 2, 6, 4), (3, 1, 6, 1))
HEAD = 1280
BN_EPS = 1e-5


def depths_of(alpha: float) -> list[int]:
    """Channel counts scaled by alpha, rounded to multiples of 8 (never below 90% of the scaled value)."""
    return [mobile.make_divisible(d * alpha, 8) for d in BASE_DEPTHS]


def stacks_of(alpha: float):
    """[(layer index, [(cin, cout, kernel, stride, expansion) per block])] of the six stacks."""
    depths = depths_of(alpha)
    result = []
    for k, (kernel, stride, expansion, repeats) in enumerate(STACKS):
        cin, cout = depths[k + 1], depths[k + 2]
        result.append((8 + k, [(cin if i == 0 else cout, cout, kernel, stride if i == 0 else 1, expansion)
                               for i in range(repeats)]))
    return result


# ---------------------------------------------------------------------------------------------------------------
# PyTorch reference modules


class InvertedResidual(nn.Module):
    def __init__(self, cin, cout, kernel, stride, expansion):
        super().__init__()
        mid = cin * expansion
        self.layers = nn.Sequential(
            nn.Conv2d(cin, mid, 1, bias=False), nn.BatchNorm2d(mid), nn.ReLU(),
            nn.Conv2d(mid, mid, kernel, stride, kernel // 2, groups=mid, bias=False), nn.BatchNorm2d(mid), nn.ReLU(),
            nn.Conv2d(mid, cout, 1, bias=False), nn.BatchNorm2d(cout))
        self.apply_residual = cin == cout and stride == 1

    def forward(self, x):
        return x + self.layers(x) if self.apply_residual else self.layers(x)


class MNASNet(nn.Module):
    def __init__(self, alpha: float = 1.0, num_classes: int = 1000):
        super().__init__()
        d = depths_of(alpha)
        layers = [nn.Conv2d(3, d[0], 3, 2, 1, bias=False), nn.BatchNorm2d(d[0]), nn.ReLU(),
                  nn.Conv2d(d[0], d[0], 3, 1, 1, groups=d[0], bias=False), nn.BatchNorm2d(d[0]), nn.ReLU(),
                  nn.Conv2d(d[0], d[1], 1, bias=False), nn.BatchNorm2d(d[1])]
        layers += [nn.Sequential(*[InvertedResidual(*b) for b in blocks]) for _, blocks in stacks_of(alpha)]
        layers += [nn.Conv2d(d[7], HEAD, 1, bias=False), nn.BatchNorm2d(HEAD), nn.ReLU()]
        self.layers = nn.Sequential(*layers)
        self.classifier = nn.Sequential(nn.Dropout(0.2), nn.Linear(HEAD, num_classes))

    def forward(self, x):
        return self.classifier(self.layers(x).mean([2, 3]))


# ---------------------------------------------------------------------------------------------------------------
# configuration from the weights and the zoo model


def infer_variant(weights, source: str) -> dict:
    if "layers.0.weight" not in weights or "layers.8.0.layers.0.weight" not in weights:
        raise ValueError(f"{source}: not MNASNet weights (no 'layers.0.weight' / 'layers.8.0.layers.0.weight' keys)")
    # from convolutions, not BatchNorms (folded weights have none): the 3x3 RGB stem; the 1x1 head conv, d[7] -> HEAD
    stem, last = mobile.stem_channels(weights, "layers.0"), weights.count("layers.14.weight") // HEAD
    for variant, alpha in ALPHAS.items():
        d = depths_of(alpha)
        if d[0] == stem and d[7] == last:
            return {"variant": variant, "num_classes": weights.count("classifier.1.bias")}
    raise ValueError(f"{source}: MNASNet with a {stem}-channel stem and {last} final channels matches none of "
                     f"{', '.join(f'{v} ({depths_of(a)[0]}, {depths_of(a)[7]})' for v, a in ALPHAS.items())}")


class MNASNetModel(ClassifierModel):
    name = "mnasnet"
    summary = "MNASNet 0.5/0.75/1.0/1.3 (torchvision keys), ImageNet pre-processing, top-5 classification."

    def add_arguments(self, parser):
        add_classifier_flags(parser, tuple(ALPHAS), "mnasnet1_0")

    def random_module(self, args, seed):
        torch.manual_seed(seed)
        module = MNASNet(ALPHAS[args.variant or "mnasnet1_0"], args.num_classes)
        randomize_batchnorm(module, torch.Generator().manual_seed(seed))
        return module.eval()

    def config_from_weights(self, weights, args):
        config = infer_variant(weights, weights.source)
        check_variant(config, args, weights.source)
        check_stride_32(args.input_size, "MNASNet")
        return {**config, "input_size": args.input_size}

    def reference_module(self, config):
        return MNASNet(ALPHAS[config["variant"]], config["num_classes"])

    def input_shape(self, config):
        return (3, config["input_size"], config["input_size"])

    def define(self, net, weights, config, x):
        alpha = ALPHAS[config["variant"]]
        d = depths_of(alpha)
        y = mobile.conv_bn_act(net, weights, "layers.0", "layers.1", x, d[0], 3, 2, 1, "relu", "layers.2", BN_EPS)
        y = mobile.conv_bn_act(net, weights, "layers.3", "layers.4", y, d[0], 3, 1, d[0], "relu", "layers.5", BN_EPS)
        y = mobile.conv_bn_act(net, weights, "layers.6", "layers.7", y, d[1], 1, 1, 1, None, "layers.7", BN_EPS)
        for index, blocks in stacks_of(alpha):
            for i, (cin, cout, kernel, stride, expansion) in enumerate(blocks):
                p = f"layers.{index}.{i}.layers"
                convs = [(f"{p}.0", f"{p}.1", cin * expansion, 1, 1, 1, "relu", f"{p}.2"),
                         (f"{p}.3", f"{p}.4", cin * expansion, kernel, stride, cin * expansion, "relu", f"{p}.5"),
                         (f"{p}.6", f"{p}.7", cout, 1, 1, 1, None, p)]
                y = mobile.inverted_residual(net, weights, f"layers.{index}.{i}", y, convs, eps=BN_EPS)
            core.rename(y, f"layers.{index}")
        y = mobile.conv_bn_act(net, weights, "layers.14", "layers.15", y, HEAD, 1, 1, 1, "relu", "layers", BN_EPS)
        y = core.flatten(net, core.global_avg_pool(net, y, "mean"), "flatten")
        return [core.linear(net, weights, "classifier.1", y, config["num_classes"])]
