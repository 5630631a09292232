"""RegNet X and Y, 400MF to 32GF, with torchvision's state_dict keys and shapes, written without torchvision.

Every RegNet is four stages of residual bottleneck blocks (1x1, grouped 3x3 with the stride, 1x1; Y adds
squeeze-excitation after the 3x3). A variant's widths and depths come from four numbers (depth, w_0, w_a, w_m)
and a group width through the quantized linear rule of "Designing Network Design Spaces"; the variant is read from
the weights by the blocks per stage and the stage widths, and every shape is checked when the network is built.
"""
from __future__ import annotations

import math

import torch
from torch import nn

from layers import core, mobile
from zoo.engine.classifier import ClassifierModel, add_classifier_flags, check_stride_32, check_variant
from zoo.engine.model import randomize_batchnorm
from zoo.reference_modules import Conv2dNormActivation, SqueezeExcitation

# variant: (depth, w_0, w_a, w_m, group width); torchvision's published parameters
PARAMS = {"regnet_y_400mf": (16, 48, 27.89, 2.09, 8), "regnet_y_800mf": (14, 56, 38.84, 2.4, 16),
          "regnet_y_1_6gf": (27, 48, 20.71, 2.65, 24), "regnet_y_3_2gf": (21, 80, 42.63, 2.66, 24),
          "regnet_y_8gf": (17, 192, 76.82, 2.19, 56), "regnet_y_16gf": (18, 200, 106.23, 2.48, 112),
          "regnet_y_32gf": (20, 232, 115.89, 2.53, 232),
          "regnet_x_400mf": (22, 24, 24.48, 2.54, 16), "regnet_x_800mf": (16, 56, 35.73, 2.28, 16),
          "regnet_x_1_6gf": (18, 80, 34.01, 2.25, 24), "regnet_x_3_2gf": (25, 88, 26.31, 2.25, 48),
          "regnet_x_8gf": (23, 80, 49.56, 2.88, 120), "regnet_x_16gf": (22, 216, 55.59, 2.1, 128),
          "regnet_x_32gf": (23, 320, 69.86, 2.0, 168)}
STEM = 32
SE_RATIO = 0.25
BN_EPS = 1e-5


def stages_of(variant: str) -> list[tuple[int, int, int]]:
    """[(width, depth, group width)] of the four stages: widths w_0 + w_a * i, snapped to w_0 * w_m^k and to
    multiples of 8, consecutive equal widths forming a stage; then widths made divisible by their group width."""
    depth, w0, wa, wm, group = PARAMS[variant]
    continuous = torch.arange(depth, device="cpu") * wa + w0  # float32, as the published models were made
    exponents = torch.round(torch.log(continuous / w0) / math.log(wm))
    widths = (torch.round(w0 * torch.pow(wm, exponents) / 8) * 8).int().tolist()
    stages: list[list[int]] = []
    for w in widths:
        if stages and stages[-1][0] == w:
            stages[-1][1] += 1
        else:
            stages.append([w, 1])
    result = []
    for w, d in stages:
        g = min(group, w)
        result.append((mobile.make_divisible(w, g), d, g))
    return result


# ---------------------------------------------------------------------------------------------------------------
# PyTorch reference modules


class BottleneckTransform(nn.Sequential):
    def __init__(self, cin, cout, stride, group, se):
        layers = {"a": Conv2dNormActivation(cin, cout, 1),
                  "b": Conv2dNormActivation(cout, cout, 3, stride, cout // group)}
        if se:
            layers["se"] = SqueezeExcitation(cout, int(round(SE_RATIO * cin)), "relu", "sigmoid")
        layers["c"] = Conv2dNormActivation(cout, cout, 1, activation=None)
        super().__init__()
        for name, layer in layers.items():
            self.add_module(name, layer)


class ResBottleneckBlock(nn.Module):
    def __init__(self, cin, cout, stride, group, se):
        super().__init__()
        self.proj = Conv2dNormActivation(cin, cout, 1, stride, activation=None) \
            if cin != cout or stride != 1 else None
        self.f = BottleneckTransform(cin, cout, stride, group, se)
        self.activation = nn.ReLU()

    def forward(self, x):
        shortcut = self.proj(x) if self.proj is not None else x
        return self.activation(shortcut + self.f(x))


class RegNet(nn.Module):
    def __init__(self, variant: str = "regnet_y_400mf", num_classes: int = 1000):
        super().__init__()
        se = variant.startswith("regnet_y")
        self.stem = Conv2dNormActivation(3, STEM, 3, 2)
        self.trunk_output = nn.Sequential()
        cin = STEM
        for s, (width, depth, group) in enumerate(stages_of(variant), start=1):
            stage = nn.Sequential()
            for i in range(depth):
                stage.add_module(f"block{s}-{i}", ResBottleneckBlock(cin, width, 2 if i == 0 else 1, group, se))
                cin = width
            self.trunk_output.add_module(f"block{s}", stage)
        self.avgpool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(cin, num_classes)

    def forward(self, x):
        return self.fc(torch.flatten(self.avgpool(self.trunk_output(self.stem(x))), 1))


# ---------------------------------------------------------------------------------------------------------------
# configuration from the weights


def infer_variant(weights, source: str) -> dict:
    if "stem.0.weight" not in weights or "trunk_output.block1.block1-0.f.a.0.weight" not in weights:
        raise ValueError(f"{source}: not RegNet weights (no 'stem.0.weight' / "
                         f"'trunk_output.block1.block1-0.f.a.0.weight' keys)")
    se = "trunk_output.block1.block1-0.f.se.fc1.weight" in weights
    depths, widths = [], []
    for s in range(1, 5):
        n = 0
        while f"trunk_output.block{s}.block{s}-{n}.f.a.0.weight" in weights:
            n += 1
        depths.append(n)
        # the 1x1 conv `f.c` maps width -> width; read from it, not its BatchNorm (folded weights have none)
        widths.append(math.isqrt(weights.count(f"trunk_output.block{s}.block{s}-0.f.c.0.weight")))
    for variant in PARAMS:
        stages = stages_of(variant)
        if variant.startswith("regnet_y") == se and [d for _, d, _ in stages] == depths \
                and [w for w, _, _ in stages] == widths:
            return {"variant": variant, "num_classes": weights.count("fc.bias")}
    raise ValueError(f"{source}: RegNet-{'Y' if se else 'X'} with stage depths {depths} and widths {widths} "
                     f"matches none of {', '.join(PARAMS)}")


# ---------------------------------------------------------------------------------------------------------------
# the zoo model


class RegNetModel(ClassifierModel):
    name = "regnet"
    summary = "RegNet X and Y, 400MF to 32GF (torchvision keys), ImageNet pre-processing, top-5 classification."

    def add_arguments(self, parser):
        add_classifier_flags(parser, tuple(PARAMS), "regnet_y_400mf")

    def random_module(self, args, seed):
        torch.manual_seed(seed)
        module = RegNet(args.variant or "regnet_y_400mf", args.num_classes)
        randomize_batchnorm(module, torch.Generator().manual_seed(seed))
        return module.eval()

    def config_from_weights(self, weights, args):
        config = infer_variant(weights, weights.source)
        check_variant(config, args, weights.source)
        check_stride_32(args.input_size, "RegNet")
        return {**config, "input_size": args.input_size}

    def reference_module(self, config):
        return RegNet(config["variant"], config["num_classes"])

    def input_shape(self, config):
        return (3, config["input_size"], config["input_size"])

    def define(self, net, weights, config, x):
        se = config["variant"].startswith("regnet_y")
        y = mobile.conv_bn_act(net, weights, "stem.0", "stem.1", x, STEM, 3, 2, 1, "relu", "stem", BN_EPS)
        cin = STEM
        for s, (width, depth, group) in enumerate(stages_of(config["variant"]), start=1):
            for i in range(depth):
                y = res_bottleneck_block(net, weights, f"trunk_output.block{s}.block{s}-{i}", y, cin, width,
                                         2 if i == 0 else 1, group, se)
                cin = width
            core.rename(y, f"trunk_output.block{s}")
        core.rename(y, "trunk_output")
        y = core.flatten(net, core.global_avg_pool(net, y, "avgpool"), "flatten")
        return [core.linear(net, weights, "fc", y, config["num_classes"])]


def res_bottleneck_block(net, weights, prefix, x, cin, cout, stride, group, se):
    """relu(shortcut + f(x)); f is 1x1, grouped 3x3 (stride), [squeeze-excitation], 1x1 without activation."""
    f = f"{prefix}.f"
    y = mobile.conv_bn_act(net, weights, f"{f}.a.0", f"{f}.a.1", x, cout, 1, 1, 1, "relu", f"{f}.a", BN_EPS)
    y = mobile.conv_bn_act(net, weights, f"{f}.b.0", f"{f}.b.1", y, cout, 3, stride, cout // group, "relu",
                           f"{f}.b", BN_EPS)
    if se:
        y = mobile.squeeze_excitation(net, weights, f"{f}.se", y, int(round(SE_RATIO * cin)))
    y = mobile.conv_bn_act(net, weights, f"{f}.c.0", f"{f}.c.1", y, cout, 1, 1, 1, None, f, BN_EPS)
    shortcut = x
    if cin != cout or stride != 1:
        shortcut = mobile.conv_bn_act(net, weights, f"{prefix}.proj.0", f"{prefix}.proj.1", x, cout, 1, stride, 1,
                                      None, f"{prefix}.proj", BN_EPS)
    return core.activation(net, core.add(net, shortcut, y, f"{prefix}/add"), "relu", prefix)
