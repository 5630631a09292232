"""EfficientNet B0-B7 and EfficientNetV2 S/M/L with torchvision's state_dict keys, and EfficientNet-Lite0 with the
`efficientnet_pytorch` keys (`_conv_stem`, `_blocks.N._expand_conv`, ...) of the TensorFlow-ported file that
tensorrtx's efficientnet also reads.

The variant is read from the weights: the key style picks the family (torchvision's `features.*` or `_blocks.*`),
the stem width, the blocks per stage and the head convolution's size pick B0-B7 or V2 S/M/L. Kernel sizes and
expansions follow from the shapes; strides are the architecture's. EfficientNetV2 is the same torchvision class with
other stages: its first stages are Fused-MBConv (one full k x k convolution, plus a 1x1 projection when expanded; no
squeeze-excitation, so no `fc1` key in `features.1`), BatchNorm eps 1e-3 and a head of 1280 channels; it is a variant
set of this family, not a family of its own, because its weights share the key layout, the class and the reader.
Lite0 is the TF port: ReLU6, no squeeze-excitation, TF "SAME" padding (uneven on stride 2), BatchNorm eps 1e-3,
input (x - 127) / 128, i.e. mean 0.5 and std 0.5 on 0..1 values.
"""
from __future__ import annotations

import math

import torch
from torch import nn

from layers import core, mobile
from layers.mobile import make_divisible
from zoo.engine.classifier import ClassifierModel, check_variant
from zoo.engine.model import randomize_batchnorm
from zoo.reference_modules import Conv2dNormActivation, SqueezeExcitation
from zoo.vision.imagenet import CropSpec

# B0's stages: (expansion, kernel, stride, in channels, out channels, blocks)
STAGES = ((1, 3, 1, 32, 16, 1), (6, 3, 2, 16, 24, 2), (6, 5, 2, 24, 40, 2), (6, 3, 2, 40, 80, 3),
          (6, 5, 1, 80, 112, 3), (6, 5, 2, 112, 192, 4), (6, 3, 1, 192, 320, 1))
# variant: (width multiplier, depth multiplier, crop, resize) - torchvision's numbers; bicubic resize
SCALING = {"efficientnet_b0": (1.0, 1.0, 224, 256), "efficientnet_b1": (1.0, 1.1, 240, 256),
           "efficientnet_b2": (1.1, 1.2, 288, 288), "efficientnet_b3": (1.2, 1.4, 300, 320),
           "efficientnet_b4": (1.4, 1.8, 380, 384), "efficientnet_b5": (1.6, 2.2, 456, 456),
           "efficientnet_b6": (1.8, 2.6, 528, 528), "efficientnet_b7": (2.0, 3.1, 600, 600)}
# EfficientNetV2 (torchvision's table): (fused, expansion, kernel, stride, in channels, out channels, blocks)
V2_STAGES = {
    "efficientnet_v2_s": ((True, 1, 3, 1, 24, 24, 2), (True, 4, 3, 2, 24, 48, 4), (True, 4, 3, 2, 48, 64, 4),
                          (False, 4, 3, 2, 64, 128, 6), (False, 6, 3, 1, 128, 160, 9),
                          (False, 6, 3, 2, 160, 256, 15)),
    "efficientnet_v2_m": ((True, 1, 3, 1, 24, 24, 3), (True, 4, 3, 2, 24, 48, 5), (True, 4, 3, 2, 48, 80, 5),
                          (False, 4, 3, 2, 80, 160, 7), (False, 6, 3, 1, 160, 176, 14),
                          (False, 6, 3, 2, 176, 304, 18), (False, 6, 3, 1, 304, 512, 5)),
    "efficientnet_v2_l": ((True, 1, 3, 1, 32, 32, 4), (True, 4, 3, 2, 32, 64, 7), (True, 4, 3, 2, 64, 96, 7),
                          (False, 4, 3, 2, 96, 192, 10), (False, 6, 3, 1, 192, 224, 19),
                          (False, 6, 3, 2, 224, 384, 25), (False, 6, 3, 1, 384, 640, 7)),
}
V2_HEAD, V2_EPS = 1280, 1e-3
# variant: (crop, resize, interpolation, mean/std 0.5) of torchvision's EfficientNet_V2 weights
V2_CROPS = {"efficientnet_v2_s": (384, 384, "linear", False), "efficientnet_v2_m": (480, 480, "linear", False),
            "efficientnet_v2_l": (480, 480, "cubic", True)}
LITE = "efficientnet_lite0"
B_EPS, LITE_EPS = 1e-5, 1e-3   # torchvision's BatchNorm2d default; the TF port's 1e-3


def blocks_of(variant: str):
    """[(expansion, kernel, stride, cin, cout)] per MBConv block, grouped by stage; and (stem, head) channels."""
    if variant == LITE:  # Lite0: B0's layout; the stem and head are not scaled in Lite
        width, depth = 1.0, 1.0
    else:
        width, depth = SCALING[variant][:2]
    stages = []
    for expansion, kernel, stride, cin, cout, n in STAGES:
        cin, cout = make_divisible(cin * width), make_divisible(cout * width)
        repeats = math.ceil(n * depth)
        stages.append([(expansion, kernel, stride if i == 0 else 1, cin if i == 0 else cout, cout)
                       for i in range(repeats)])
    last = stages[-1][-1][4]
    head = 1280 if variant == LITE else 4 * last
    return stages, make_divisible(32 * width), head


def v2_blocks_of(variant: str):
    """[(fused, expansion, kernel, stride, cin, cout)] per block, grouped by stage; and (stem, head) channels."""
    stages = [[(fused, expansion, kernel, stride if i == 0 else 1, cin if i == 0 else cout, cout) for i in range(n)]
              for fused, expansion, kernel, stride, cin, cout, n in V2_STAGES[variant]]
    return stages, V2_STAGES[variant][0][4], V2_HEAD


def is_v2(variant: str) -> bool:
    return variant in V2_STAGES


# ---------------------------------------------------------------------------------------------------------------
# PyTorch reference modules: torchvision's EfficientNet


class MBConv(nn.Module):
    def __init__(self, expansion, kernel, stride, cin, cout, eps=B_EPS):
        super().__init__()
        hidden = make_divisible(cin * expansion)
        layers = [Conv2dNormActivation(cin, hidden, 1, activation="silu", eps=eps)] if hidden != cin else []
        layers += [Conv2dNormActivation(hidden, hidden, kernel, stride, hidden, "silu", eps),
                   SqueezeExcitation(hidden, max(1, cin // 4), "silu", "sigmoid"),
                   Conv2dNormActivation(hidden, cout, 1, activation=None, eps=eps)]
        self.block = nn.Sequential(*layers)
        self.use_res_connect = stride == 1 and cin == cout

    def forward(self, x):
        return x + self.block(x) if self.use_res_connect else self.block(x)  # stochastic depth: identity in eval


class FusedMBConv(MBConv):
    """EfficientNetV2's early block: the expansion and the depthwise convolution fused into one k x k convolution,
    then a 1x1 projection (none when not expanded); no squeeze-excitation."""

    def __init__(self, expansion, kernel, stride, cin, cout, eps=V2_EPS):
        nn.Module.__init__(self)
        hidden = make_divisible(cin * expansion)
        if hidden != cin:
            layers = [Conv2dNormActivation(cin, hidden, kernel, stride, activation="silu", eps=eps),
                      Conv2dNormActivation(hidden, cout, 1, activation=None, eps=eps)]
        else:
            layers = [Conv2dNormActivation(cin, cout, kernel, stride, activation="silu", eps=eps)]
        self.block = nn.Sequential(*layers)
        self.use_res_connect = stride == 1 and cin == cout


def _v2_block(fused, *spec):
    return FusedMBConv(*spec, eps=V2_EPS) if fused else MBConv(*spec, eps=V2_EPS)


class EfficientNet(nn.Module):
    def __init__(self, variant: str = "efficientnet_b0", num_classes: int = 1000):
        super().__init__()
        if is_v2(variant):
            stages, stem, head = v2_blocks_of(variant)
            blocks = [nn.Sequential(*[_v2_block(*b) for b in stage]) for stage in stages]
            eps = V2_EPS
        else:
            stages, stem, head = blocks_of(variant)
            blocks = [nn.Sequential(*[MBConv(*b) for b in stage]) for stage in stages]
            eps = B_EPS
        features = [Conv2dNormActivation(3, stem, 3, 2, activation="silu", eps=eps), *blocks]
        features.append(Conv2dNormActivation(stages[-1][-1][-1], head, 1, activation="silu", eps=eps))
        self.features = nn.Sequential(*features)
        self.avgpool = nn.AdaptiveAvgPool2d(1)
        self.classifier = nn.Sequential(nn.Dropout(0.2), nn.Linear(head, num_classes))

    def forward(self, x):
        return self.classifier(torch.flatten(self.avgpool(self.features(x)), 1))


# ---------------------------------------------------------------------------------------------------------------
# PyTorch reference modules: EfficientNet-Lite0 in efficientnet_pytorch's layout


class SameConv2d(nn.Conv2d):
    """Conv2d with TF's "SAME" padding computed from the input size (the odd pixel goes bottom/right)."""

    def forward(self, x):
        (top, left), (bottom, right) = mobile.same_padding(tuple(x.shape[2:]), self.kernel_size[0], self.stride[0])
        return super().forward(nn.functional.pad(x, (left, right, top, bottom)))


class LiteBlock(nn.Module):
    def __init__(self, expansion, kernel, stride, cin, cout):
        super().__init__()
        hidden = cin * expansion
        if expansion != 1:
            self._expand_conv = SameConv2d(cin, hidden, 1, bias=False)
            self._bn0 = nn.BatchNorm2d(hidden, eps=LITE_EPS)
        self._depthwise_conv = SameConv2d(hidden, hidden, kernel, stride, groups=hidden, bias=False)
        self._bn1 = nn.BatchNorm2d(hidden, eps=LITE_EPS)
        self._project_conv = SameConv2d(hidden, cout, 1, bias=False)
        self._bn2 = nn.BatchNorm2d(cout, eps=LITE_EPS)
        self.expansion, self.skip = expansion, stride == 1 and cin == cout

    def forward(self, x):
        y = nn.functional.relu6(self._bn0(self._expand_conv(x))) if self.expansion != 1 else x
        y = nn.functional.relu6(self._bn1(self._depthwise_conv(y)))
        y = self._bn2(self._project_conv(y))
        return y + x if self.skip else y


class EfficientNetLite(nn.Module):
    def __init__(self, num_classes: int = 1000):
        super().__init__()
        stages, stem, head = blocks_of(LITE)
        self._conv_stem = SameConv2d(3, stem, 3, 2, bias=False)
        self._bn0 = nn.BatchNorm2d(stem, eps=LITE_EPS)
        self._blocks = nn.ModuleList([LiteBlock(*b) for stage in stages for b in stage])
        self._conv_head = SameConv2d(stages[-1][-1][4], head, 1, bias=False)
        self._bn1 = nn.BatchNorm2d(head, eps=LITE_EPS)
        self._fc = nn.Linear(head, num_classes)

    def forward(self, x):
        x = nn.functional.relu6(self._bn0(self._conv_stem(x)))
        for block in self._blocks:
            x = block(x)
        x = nn.functional.relu6(self._bn1(self._conv_head(x)))
        return self._fc(torch.flatten(nn.functional.adaptive_avg_pool2d(x, 1), 1))


# ---------------------------------------------------------------------------------------------------------------
# configuration from the weights


def _stage_counts(weights) -> list[int]:
    counts = []
    while f"features.{len(counts) + 1}.0.block.0.0.weight" in weights:
        n = 0
        while f"features.{len(counts) + 1}.{n}.block.0.0.weight" in weights:
            n += 1
        counts.append(n)
    return counts


def infer_variant(weights, source: str) -> dict:
    """{'variant', 'num_classes'} from keys and value counts alone (flat .wts work too)."""
    if "_conv_stem.weight" in weights and "_blocks.0._depthwise_conv.weight" in weights:
        blocks = sum(1 for k in weights.keys() if k.endswith("._depthwise_conv.weight"))
        expected = sum(len(s) for s in blocks_of(LITE)[0])
        if "_blocks.0._se_reduce.weight" in weights or blocks != expected:
            raise ValueError(f"{source}: efficientnet_pytorch keys with {blocks} blocks"
                             f"{' and squeeze-excitation' if '_blocks.0._se_reduce.weight' in weights else ''}: "
                             f"only EfficientNet-Lite0 ({expected} blocks, no squeeze-excitation) is supported "
                             f"in that layout; use torchvision's keys for B0-B7")
        return {"variant": LITE, "num_classes": weights.count("_fc.bias")}
    if "features.0.0.weight" not in weights or "features.1.0.block.0.0.weight" not in weights:
        raise ValueError(f"{source}: not EfficientNet weights (neither torchvision's 'features.1.0.block' nor "
                         f"efficientnet_pytorch's '_blocks.0' keys)")
    counts, stem = _stage_counts(weights), mobile.stem_channels(weights, "features.0.0")
    if "features.1.0.block.1.fc1.weight" not in weights:  # no squeeze-excitation in the first stage: V2's Fused
        return _infer_v2(weights, source, counts, stem)
    # B1 and B2 (width 1.0 and 1.1) have the same stem and block counts: the head convolution's value count
    # (last stage's channels x head channels, both scaled by the width) tells them apart
    head_values = weights.count(f"features.{len(counts) + 1}.0.weight")
    for variant in SCALING:
        stages, stem_channels, head = blocks_of(variant)
        if [len(s) for s in stages] == counts and stem_channels == stem and \
                head_values == stages[-1][-1][4] * head:
            return {"variant": variant, "num_classes": weights.count("classifier.1.bias")}
    raise ValueError(f"{source}: EfficientNet keys with stem {stem} channels, {counts} blocks per stage and a "
                     f"head convolution of {head_values} values match none of B0-B7")


def _infer_v2(weights, source: str, counts: list[int], stem: int) -> dict:
    head_values = weights.count(f"features.{len(counts) + 1}.0.weight")
    for variant in V2_STAGES:
        stages, stem_channels, head = v2_blocks_of(variant)
        if [len(s) for s in stages] == counts and stem_channels == stem and head_values == stages[-1][-1][-1] * head:
            return {"variant": variant, "num_classes": weights.count("classifier.1.bias")}
    raise ValueError(f"{source}: EfficientNetV2 keys (Fused-MBConv first stage) with stem {stem} channels, {counts} "
                     f"blocks per stage and a head convolution of {head_values} values match none of V2 S/M/L")


# ---------------------------------------------------------------------------------------------------------------
# the zoo model


class EfficientNetModel(ClassifierModel):
    name = "efficientnet"
    summary = ("EfficientNet B0-B7 and V2 S/M/L (torchvision keys) and Lite0 (efficientnet_pytorch keys, TF SAME "
               "padding), ImageNet pre-processing, top-5 classification.")

    def add_arguments(self, parser):
        parser.add_argument("--variant", choices=(*SCALING, *V2_STAGES, LITE),
                            help="random weights use it (default efficientnet_b0); with --weights it must agree")
        parser.add_argument("--num-classes", type=int, default=1000, help="classes of random weights (default 1000)")
        parser.add_argument("--input-size", type=int,
                            help="input height and width (default: the variant's, 224 for B0 and Lite0, 600 for B7, "
                                 "384 for V2-S)")

    def random_module(self, args, seed):
        torch.manual_seed(seed)
        variant = args.variant or "efficientnet_b0"
        module = EfficientNetLite(args.num_classes) if variant == LITE else EfficientNet(variant, args.num_classes)
        randomize_batchnorm(module, torch.Generator().manual_seed(seed))
        return module.eval()

    def config_from_weights(self, weights, args):
        config = infer_variant(weights, weights.source)
        check_variant(config, args, weights.source)
        size = args.input_size or native_size(config["variant"])
        if size < 32:  # any size works (padding k // 2 or SAME); B3's own is 300
            raise ValueError(f"--input-size {size} is below 32, EfficientNet's total stride")
        return {**config, "input_size": size}

    def crop_spec(self, config):
        import cv2
        if config["variant"] == LITE:  # the TF port's (x - 127) / 128 on 0..255 values
            return CropSpec.scaled(config["input_size"], mean=(127 / 255,) * 3, std=(128 / 255,) * 3)
        if is_v2(config["variant"]):
            crop, resize, interpolation, half = V2_CROPS[config["variant"]]
            kwargs = {"mean": (0.5,) * 3, "std": (0.5,) * 3} if half else {}
            return CropSpec.scaled(config["input_size"], resize / crop, **kwargs,
                                   interpolation=cv2.INTER_CUBIC if interpolation == "cubic" else cv2.INTER_LINEAR)
        _, _, crop, resize = SCALING[config["variant"]]
        return CropSpec.scaled(config["input_size"], resize / crop, interpolation=cv2.INTER_CUBIC)

    def reference_module(self, config):
        if config["variant"] == LITE:
            return EfficientNetLite(config["num_classes"])
        return EfficientNet(config["variant"], config["num_classes"])

    def input_shape(self, config):
        return (3, config["input_size"], config["input_size"])

    def define(self, net, weights, config, x):
        if config["variant"] == LITE:
            return [define_lite(net, weights, config, x)]
        return [define_torchvision(net, weights, config, x)]


def native_size(variant: str) -> int:
    """The crop of torchvision's weights for the variant (224 for Lite0)."""
    if variant == LITE:
        return 224
    return V2_CROPS[variant][0] if is_v2(variant) else SCALING[variant][2]


def define_torchvision(net, weights, config, x):
    if is_v2(config["variant"]):
        return define_v2(net, weights, config, x)
    stages, stem, head = blocks_of(config["variant"])
    y = mobile.conv_bn_act(net, weights, "features.0.0", "features.0.1", x, stem, 3, 2, 1, "silu", "features.0",
                           B_EPS)
    for s, stage in enumerate(stages, start=1):
        for i, (expansion, kernel, stride, cin, cout) in enumerate(stage):
            p = f"features.{s}.{i}.block"
            hidden = make_divisible(cin * expansion)
            convs = [(f"{p}.0.0", f"{p}.0.1", hidden, 1, 1, 1, "silu", f"{p}.0")] if hidden != cin else []
            j = len(convs)
            convs += [(f"{p}.{j}.0", f"{p}.{j}.1", hidden, kernel, stride, hidden, "silu", f"{p}.{j}"),
                      (f"{p}.{j + 2}.0", f"{p}.{j + 2}.1", cout, 1, 1, 1, None, p)]
            squeeze = (f"{p}.{j + 1}", max(1, cin // 4), "silu", "sigmoid")
            y = mobile.inverted_residual(net, weights, f"features.{s}.{i}", y, convs, squeeze, B_EPS)
        core.rename(y, f"features.{s}")
    n = len(stages) + 1
    y = mobile.conv_bn_act(net, weights, f"features.{n}.0", f"features.{n}.1", y, head, 1, 1, 1, "silu", "features",
                           B_EPS)
    y = core.flatten(net, core.global_avg_pool(net, y, "avgpool"), "flatten")
    return core.linear(net, weights, "classifier.1", y, config["num_classes"])


def define_v2(net, weights, config, x):
    stages, stem, head = v2_blocks_of(config["variant"])
    y = mobile.conv_bn_act(net, weights, "features.0.0", "features.0.1", x, stem, 3, 2, 1, "silu", "features.0",
                           V2_EPS)
    for s, stage in enumerate(stages, start=1):
        for i, (fused, expansion, kernel, stride, cin, cout) in enumerate(stage):
            p = f"features.{s}.{i}.block"
            hidden = make_divisible(cin * expansion)
            if fused:
                convs = [(f"{p}.0.0", f"{p}.0.1", hidden, kernel, stride, 1, "silu", f"{p}.0"),
                         (f"{p}.1.0", f"{p}.1.1", cout, 1, 1, 1, None, p)] if hidden != cin else \
                    [(f"{p}.0.0", f"{p}.0.1", cout, kernel, stride, 1, "silu", p)]
                squeeze = None
            else:
                convs = [(f"{p}.0.0", f"{p}.0.1", hidden, 1, 1, 1, "silu", f"{p}.0"),
                         (f"{p}.1.0", f"{p}.1.1", hidden, kernel, stride, hidden, "silu", f"{p}.1"),
                         (f"{p}.3.0", f"{p}.3.1", cout, 1, 1, 1, None, p)]
                squeeze = (f"{p}.2", max(1, cin // 4), "silu", "sigmoid")
            y = mobile.inverted_residual(net, weights, f"features.{s}.{i}", y, convs, squeeze, V2_EPS)
        core.rename(y, f"features.{s}")
    n = len(stages) + 1
    y = mobile.conv_bn_act(net, weights, f"features.{n}.0", f"features.{n}.1", y, head, 1, 1, 1, "silu", "features",
                           V2_EPS)
    y = core.flatten(net, core.global_avg_pool(net, y, "avgpool"), "flatten")
    return core.linear(net, weights, "classifier.1", y, config["num_classes"])


def define_lite(net, weights, config, x):
    stages, stem, head = blocks_of(LITE)
    y = mobile.conv_bn_act(net, weights, "_conv_stem", "_bn0", x, stem, 3, 2, 1, "relu6", "stem", LITE_EPS, True)
    for i, (expansion, kernel, stride, cin, cout) in enumerate(b for stage in stages for b in stage):
        p, hidden = f"_blocks.{i}", cin * expansion
        convs = [(f"{p}._expand_conv", f"{p}._bn0", hidden, 1, 1, 1, "relu6", f"{p}/expand")] if expansion != 1 else []
        convs += [(f"{p}._depthwise_conv", f"{p}._bn1", hidden, kernel, stride, hidden, "relu6", f"{p}/depthwise"),
                  (f"{p}._project_conv", f"{p}._bn2", cout, 1, 1, 1, None, None)]
        y = mobile.inverted_residual(net, weights, p, y, convs, eps=LITE_EPS, same=True)
    y = mobile.conv_bn_act(net, weights, "_conv_head", "_bn1", y, head, 1, 1, 1, "relu6", "head", LITE_EPS, True)
    y = core.flatten(net, core.global_avg_pool(net, y, "avgpool"), "flatten")
    return core.linear(net, weights, "_fc", y, config["num_classes"])
