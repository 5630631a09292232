"""MobileNet v2 and v3 (small, large) with torchvision's state_dict keys and shapes, written without torchvision.

The variant is read from the weights: v2 has `features.N.conv.*` blocks, v3 `features.N.block.*` with 11 (small) or
15 (large) inverted residuals; v2's width multiplier from the channel counts. Kernel sizes, expansions and
squeeze-excitation follow from the keys and shapes; strides and activations are the architecture's (they are not
in the weights). Pre-processing is ImageNet's: short side 256, centre crop 224, mean/std.
"""
from __future__ import annotations

import torch
from torch import nn

from layers import core, mobile
from layers.mobile import make_divisible
from zoo.engine.classifier import ClassifierModel, add_classifier_flags, check_stride_32, check_variant
from zoo.engine.model import randomize_batchnorm
from zoo.reference_modules import Conv2dNormActivation, SqueezeExcitation

# MobileNetV2: (expansion t, channels c, repeats n, first stride s)
V2_SETTINGS = ((1, 16, 1, 1), (6, 24, 2, 2), (6, 32, 3, 2), (6, 64, 4, 2), (6, 96, 3, 1), (6, 160, 3, 2),
               (6, 320, 1, 1))
V2_WIDTHS = (0.35, 0.5, 0.75, 1.0, 1.3, 1.4)
# MobileNetV3: (kernel, expanded, out, squeeze-excitation, activation, stride) per inverted residual
V3_LARGE = ((3, 16, 16, False, "relu", 1), (3, 64, 24, False, "relu", 2), (3, 72, 24, False, "relu", 1),
            (5, 72, 40, True, "relu", 2), (5, 120, 40, True, "relu", 1), (5, 120, 40, True, "relu", 1),
            (3, 240, 80, False, "hardswish", 2), (3, 200, 80, False, "hardswish", 1),
            (3, 184, 80, False, "hardswish", 1), (3, 184, 80, False, "hardswish", 1),
            (3, 480, 112, True, "hardswish", 1), (3, 672, 112, True, "hardswish", 1),
            (5, 672, 160, True, "hardswish", 2), (5, 960, 160, True, "hardswish", 1),
            (5, 960, 160, True, "hardswish", 1))
V3_SMALL = ((3, 16, 16, True, "relu", 2), (3, 72, 24, False, "relu", 2), (3, 88, 24, False, "relu", 1),
            (5, 96, 40, True, "hardswish", 2), (5, 240, 40, True, "hardswish", 1),
            (5, 240, 40, True, "hardswish", 1), (5, 120, 48, True, "hardswish", 1),
            (5, 144, 48, True, "hardswish", 1), (5, 288, 96, True, "hardswish", 2),
            (5, 576, 96, True, "hardswish", 1), (5, 576, 96, True, "hardswish", 1))
V3 = {"mobilenet_v3_large": (V3_LARGE, 1280), "mobilenet_v3_small": (V3_SMALL, 1024)}
V2_EPS, V3_EPS = 1e-5, 1e-3  # torchvision: BatchNorm2d default for v2; eps=0.001 for v3


def v2_blocks(width: float):
    """[(cin, hidden, cout, stride)] of MobileNetV2's inverted residuals, and its stem and last channels."""
    cin = make_divisible(32 * width)
    blocks = []
    for t, c, n, s in V2_SETTINGS:
        cout = make_divisible(c * width)
        for i in range(n):
            blocks.append((cin, cin * t, cout, s if i == 0 else 1))
            cin = cout
    return make_divisible(32 * width), blocks, make_divisible(1280 * max(1.0, width))


# ---------------------------------------------------------------------------------------------------------------
# PyTorch reference modules


class InvertedResidualV2(nn.Module):
    def __init__(self, cin, hidden, cout, stride):
        super().__init__()
        layers = [Conv2dNormActivation(cin, hidden, 1, activation="relu6")] if hidden != cin else []
        layers += [Conv2dNormActivation(hidden, hidden, 3, stride, groups=hidden, activation="relu6"),
                   nn.Conv2d(hidden, cout, 1, bias=False), nn.BatchNorm2d(cout)]
        self.conv = nn.Sequential(*layers)
        self.use_res_connect = stride == 1 and cin == cout

    def forward(self, x):
        return x + self.conv(x) if self.use_res_connect else self.conv(x)


class MobileNetV2(nn.Module):
    def __init__(self, width: float = 1.0, num_classes: int = 1000):
        super().__init__()
        stem, blocks, last = v2_blocks(width)
        features = [Conv2dNormActivation(3, stem, 3, 2, activation="relu6")]
        features += [InvertedResidualV2(*b) for b in blocks]
        features.append(Conv2dNormActivation(blocks[-1][2], last, 1, activation="relu6"))
        self.features = nn.Sequential(*features)
        self.classifier = nn.Sequential(nn.Dropout(0.2), nn.Linear(last, num_classes))

    def forward(self, x):
        x = nn.functional.adaptive_avg_pool2d(self.features(x), 1)
        return self.classifier(torch.flatten(x, 1))


class InvertedResidualV3(nn.Module):
    def __init__(self, cin, kernel, expanded, cout, se, activation, stride):
        super().__init__()
        layers = [Conv2dNormActivation(cin, expanded, 1, activation=activation, eps=V3_EPS)] if expanded != cin else []
        layers.append(Conv2dNormActivation(expanded, expanded, kernel, stride, expanded, activation, V3_EPS))
        if se:
            layers.append(SqueezeExcitation(expanded, make_divisible(expanded // 4), "relu", "hardsigmoid"))
        layers.append(Conv2dNormActivation(expanded, cout, 1, activation=None, eps=V3_EPS))
        self.block = nn.Sequential(*layers)
        self.use_res_connect = stride == 1 and cin == cout

    def forward(self, x):
        return x + self.block(x) if self.use_res_connect else self.block(x)


class MobileNetV3(nn.Module):
    def __init__(self, variant: str = "mobilenet_v3_large", num_classes: int = 1000):
        super().__init__()
        settings, last_channel = V3[variant]
        features = [Conv2dNormActivation(3, 16, 3, 2, activation="hardswish", eps=V3_EPS)]
        cin = 16
        for kernel, expanded, cout, se, activation, stride in settings:
            features.append(InvertedResidualV3(cin, kernel, expanded, cout, se, activation, stride))
            cin = cout
        features.append(Conv2dNormActivation(cin, 6 * cin, 1, activation="hardswish", eps=V3_EPS))
        self.features = nn.Sequential(*features)
        self.avgpool = nn.AdaptiveAvgPool2d(1)
        self.classifier = nn.Sequential(nn.Linear(6 * cin, last_channel), nn.Hardswish(), nn.Dropout(0.2),
                                        nn.Linear(last_channel, num_classes))

    def forward(self, x):
        return self.classifier(torch.flatten(self.avgpool(self.features(x)), 1))


# ---------------------------------------------------------------------------------------------------------------
# configuration from the weights


def infer_variant(weights, source: str) -> dict:
    """{'variant', 'width' (v2), 'num_classes'} from keys and value counts alone (flat .wts work too)."""
    if "features.0.0.weight" not in weights or "features.1.conv.0.0.weight" not in weights and \
            "features.1.block.0.0.weight" not in weights:
        raise ValueError(f"{source}: not MobileNet weights (no 'features.0.0.weight' / 'features.1.conv' / "
                         f"'features.1.block' keys)")
    n = 1
    while f"features.{n}.conv.0.0.weight" in weights or f"features.{n}.block.0.0.weight" in weights:
        n += 1
    blocks = n - 1
    if "features.1.conv.0.0.weight" in weights:
        # from convolutions and the classifier, not BatchNorms (folded weights have none)
        stem, num_classes = mobile.stem_channels(weights, "features.0.0"), weights.count("classifier.1.bias")
        # widths 0.35 and 0.5 share the stem (16) and the last channels (1280): the last 1x1 convolution's value
        # count (last block's channels x last channels) is the width-dependent count that tells every width apart
        last_values = weights.count(f"features.{blocks + 1}.0.weight")
        widths = [w for w in V2_WIDTHS if make_divisible(32 * w) == stem and len(v2_blocks(w)[1]) == blocks
                  and v2_blocks(w)[1][-1][2] * v2_blocks(w)[2] == last_values
                  and v2_blocks(w)[2] * num_classes == weights.count("classifier.1.weight")]
        if len(widths) != 1:
            raise ValueError(f"{source}: MobileNetV2 keys, but stem {stem} channels, {blocks} blocks and a last "
                             f"convolution of {last_values} values match no width multiplier of {V2_WIDTHS}")
        return {"variant": "mobilenet_v2", "width": widths[0], "num_classes": num_classes}
    for variant, (settings, _) in V3.items():
        if len(settings) == blocks:
            return {"variant": variant, "num_classes": weights.count("classifier.3.bias")}
    raise ValueError(f"{source}: MobileNetV3 keys with {blocks} inverted residuals; small has 11, large 15")


# ---------------------------------------------------------------------------------------------------------------
# the zoo model


class MobileNetModel(ClassifierModel):
    name = "mobilenet"
    summary = "MobileNet v2 and v3 small/large (torchvision keys), ImageNet pre-processing, top-5 classification."

    def add_arguments(self, parser):
        add_classifier_flags(parser, ("mobilenet_v2", *V3), "mobilenet_v2")

    def random_module(self, args, seed):
        torch.manual_seed(seed)
        variant = args.variant or "mobilenet_v2"
        module = MobileNetV2(1.0, args.num_classes) if variant == "mobilenet_v2" else \
            MobileNetV3(variant, args.num_classes)
        randomize_batchnorm(module, torch.Generator().manual_seed(seed))
        return module.eval()

    def config_from_weights(self, weights, args):
        config = infer_variant(weights, weights.source)
        check_variant(config, args, weights.source)
        check_stride_32(args.input_size, "MobileNet")
        return {**config, "input_size": args.input_size}

    def reference_module(self, config):
        if config["variant"] == "mobilenet_v2":
            return MobileNetV2(config["width"], config["num_classes"])
        return MobileNetV3(config["variant"], config["num_classes"])

    def input_shape(self, config):
        return (3, config["input_size"], config["input_size"])

    def define(self, net, weights, config, x):
        if config["variant"] == "mobilenet_v2":
            return [define_v2(net, weights, config, x)]
        return [define_v3(net, weights, config, x)]


def define_v2(net, weights, config, x):
    stem, blocks, last = v2_blocks(config["width"])
    y = mobile.conv_bn_act(net, weights, "features.0.0", "features.0.1", x, stem, 3, 2, 1, "relu6", "features.0",
                           V2_EPS)
    for i, (cin, hidden, cout, stride) in enumerate(blocks, start=1):
        p = f"features.{i}.conv"
        convs = [(f"{p}.0.0", f"{p}.0.1", hidden, 1, 1, 1, "relu6", f"{p}.0")] if hidden != cin else []
        j = len(convs)
        convs += [(f"{p}.{j}.0", f"{p}.{j}.1", hidden, 3, stride, hidden, "relu6", f"{p}.{j}"),
                  (f"{p}.{j + 1}", f"{p}.{j + 2}", cout, 1, 1, 1, None, p)]
        y = mobile.inverted_residual(net, weights, f"features.{i}", y, convs, eps=V2_EPS)
    n = len(blocks) + 1
    y = mobile.conv_bn_act(net, weights, f"features.{n}.0", f"features.{n}.1", y, last, 1, 1, 1, "relu6",
                           "features", V2_EPS)
    y = core.flatten(net, core.global_avg_pool(net, y, "features/avgpool"), "flatten")
    return core.linear(net, weights, "classifier.1", y, config["num_classes"])


def define_v3(net, weights, config, x):
    settings, last_channel = V3[config["variant"]]
    y = mobile.conv_bn_act(net, weights, "features.0.0", "features.0.1", x, 16, 3, 2, 1, "hardswish", "features.0",
                           V3_EPS)
    cin = 16
    for i, (kernel, expanded, cout, se, activation, stride) in enumerate(settings, start=1):
        p = f"features.{i}.block"
        convs = [(f"{p}.0.0", f"{p}.0.1", expanded, 1, 1, 1, activation, f"{p}.0")] if expanded != cin else []
        j = len(convs)
        convs.append((f"{p}.{j}.0", f"{p}.{j}.1", expanded, kernel, stride, expanded, activation, f"{p}.{j}"))
        k = j + 1 + (1 if se else 0)
        convs.append((f"{p}.{k}.0", f"{p}.{k}.1", cout, 1, 1, 1, None, p))
        squeeze = (f"{p}.{j + 1}", make_divisible(expanded // 4), "relu", "hardsigmoid") if se else None
        y = mobile.inverted_residual(net, weights, f"features.{i}", y, convs, squeeze, V3_EPS)
        cin = cout
    n = len(settings) + 1
    y = mobile.conv_bn_act(net, weights, f"features.{n}.0", f"features.{n}.1", y, 6 * cin, 1, 1, 1, "hardswish",
                           "features", V3_EPS)
    y = core.flatten(net, core.global_avg_pool(net, y, "avgpool"), "flatten")
    y = core.linear(net, weights, "classifier.0", y, last_channel)
    y = mobile.hardswish(net, y, "classifier.1")
    return core.linear(net, weights, "classifier.3", y, config["num_classes"])
