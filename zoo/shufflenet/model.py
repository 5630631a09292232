"""ShuffleNet v2 (x0.5, x1.0, x1.5, x2.0) with torchvision's state_dict keys, written without torchvision.

The width is read from the weights' convolutions, which folded weights (no BatchNorm keys) have too: the stem's from
`conv1.0`, each stage's output channels from its first block's depthwise convolution (one 3x3 kernel per channel, half
the stage's width), the last 1x1 convolution's from `conv5.0`; block counts from the `stageN.M` keys. Channel split is
two gathers along the channel axis and channel shuffle two shuffle layers (layers/shuffle.py).
"""
from __future__ import annotations

import torch
from torch import nn

import layers
from zoo.engine.classifier import ClassifierModel, add_classifier_flags
from zoo.engine.model import randomize_batchnorm

BN_EPS = 1e-5
REPEATS = (4, 8, 4)
WIDTHS = {"shufflenet_v2_x0_5": (24, 48, 96, 192, 1024), "shufflenet_v2_x1_0": (24, 116, 232, 464, 1024),
          "shufflenet_v2_x1_5": (24, 176, 352, 704, 1024), "shufflenet_v2_x2_0": (24, 244, 488, 976, 2048)}


def _conv_bn(cin, cout, k, stride=1, groups=1):
    return [nn.Conv2d(cin, cout, k, stride, k // 2, groups=groups, bias=False), nn.BatchNorm2d(cout)]


def channel_shuffle(x, groups: int):
    n, c, h, w = x.shape
    return x.view(n, groups, c // groups, h, w).transpose(1, 2).reshape(n, c, h, w)


class InvertedResidual(nn.Module):
    def __init__(self, cin, cout, stride):
        super().__init__()
        self.stride, half = stride, cout // 2
        if stride > 1:
            self.branch1 = nn.Sequential(*_conv_bn(cin, cin, 3, stride, groups=cin), *_conv_bn(cin, half, 1),
                                         nn.ReLU())
        else:
            self.branch1 = nn.Sequential()
        self.branch2 = nn.Sequential(*_conv_bn(cin if stride > 1 else half, half, 1), nn.ReLU(),
                                     *_conv_bn(half, half, 3, stride, groups=half), *_conv_bn(half, half, 1),
                                     nn.ReLU())

    def forward(self, x):
        if self.stride == 1:
            x1, x2 = x.chunk(2, dim=1)
            out = torch.cat((x1, self.branch2(x2)), dim=1)
        else:
            out = torch.cat((self.branch1(x), self.branch2(x)), dim=1)
        return channel_shuffle(out, 2)


class ShuffleNetV2(nn.Module):
    def __init__(self, widths=WIDTHS["shufflenet_v2_x1_0"], num_classes: int = 1000, repeats=REPEATS):
        super().__init__()
        self.conv1 = nn.Sequential(*_conv_bn(3, widths[0], 3, 2), nn.ReLU())
        self.maxpool = nn.MaxPool2d(3, 2, 1)
        cin = widths[0]
        for stage, (count, cout) in enumerate(zip(repeats, widths[1:4]), start=2):
            blocks = [InvertedResidual(cin, cout, 2)] + [InvertedResidual(cout, cout, 1) for _ in range(count - 1)]
            setattr(self, f"stage{stage}", nn.Sequential(*blocks))
            cin = cout
        self.conv5 = nn.Sequential(*_conv_bn(cin, widths[4], 1), nn.ReLU())
        self.fc = nn.Linear(widths[4], num_classes)

    def forward(self, x):
        x = self.maxpool(self.conv1(x))
        x = self.conv5(self.stage4(self.stage3(self.stage2(x))))
        return self.fc(x.mean([2, 3]))


def _branch(net, weights, prefix, x, cout, specs):
    """A Sequential of (conv index, bn index, kernel, stride, depthwise, relu index or None): its depthwise
    convolutions keep their input's channels, the others output `cout`."""
    y = x
    for conv, bn, k, stride, depthwise, relu in specs:
        groups, out = (y.shape[1], y.shape[1]) if depthwise else (1, cout)
        y = layers.conv_bn(net, weights, f"{prefix}.{conv}", f"{prefix}.{bn}", y, out, k, stride, k // 2, groups,
                           eps=BN_EPS)
        if relu is not None:
            y = layers.activation(net, y, "relu", f"{prefix}.{relu}")
    return layers.rename(y, prefix)


def inverted_residual(net, weights, prefix, x, cout, stride):
    half = cout // 2
    if stride == 1:
        left, right = layers.channel_split(net, x, f"{prefix}/split")
    else:
        left = _branch(net, weights, f"{prefix}.branch1", x, half,
                       [(0, 1, 3, stride, True, None), (2, 3, 1, 1, False, 4)])
        right = x
    right = _branch(net, weights, f"{prefix}.branch2", right, half,
                    [(0, 1, 1, 1, False, 2), (3, 4, 3, stride, True, None), (5, 6, 1, 1, False, 7)])
    return layers.channel_shuffle(net, layers.concat(net, [left, right], f"{prefix}/concat"), 2, prefix)


class ShuffleNetModel(ClassifierModel):
    name = "shufflenet"
    summary = "ShuffleNet v2 x0.5-x2.0 (torchvision keys), ImageNet pre-processing, top-5 classification."

    def add_arguments(self, parser):
        add_classifier_flags(parser, sorted(WIDTHS), "shufflenet_v2_x1_0", "a multiple of 32")

    def random_module(self, args, seed):
        torch.manual_seed(seed)
        module = ShuffleNetV2(WIDTHS[args.variant or "shufflenet_v2_x1_0"], args.num_classes)
        randomize_batchnorm(module, torch.Generator().manual_seed(seed))
        return module.eval()

    def config_from_weights(self, weights, args):
        if "conv1.0.weight" not in weights or "stage2.0.branch1.0.weight" not in weights:
            raise ValueError(f"{weights.source}: not ShuffleNet v2 weights (no 'conv1.0.weight' / "
                             f"'stage2.0.branch1.0.weight' keys)")
        repeats = []
        for stage in (2, 3, 4):
            n = 0
            while f"stage{stage}.{n}.branch2.0.weight" in weights:
                n += 1
            repeats.append(n)
        stem = weights.count("conv1.0.weight") // (3 * 3 * 3)  # 3x3 over RGB
        stages = [2 * weights.count(f"stage{s}.0.branch2.3.weight") // (3 * 3) for s in (2, 3, 4)]  # depthwise 3x3
        widths = (stem, *stages, weights.count("conv5.0.weight") // max(stages[-1], 1))  # 1x1 over stage 4
        if tuple(repeats) != REPEATS:
            raise ValueError(f"{weights.source}: {repeats} blocks per stage; ShuffleNet v2 has {list(REPEATS)}")
        variant = next((v for v, w in WIDTHS.items() if w == widths), "shufflenet_v2_custom_width")
        if args.variant and args.variant != variant:
            raise ValueError(f"--variant {args.variant} disagrees with {weights.source}, which holds a {variant}")
        if args.input_size % 32:
            raise ValueError(f"--input-size {args.input_size} is not a multiple of 32 (ShuffleNet's total stride)")
        return {"variant": variant, "widths": list(widths), "num_classes": weights.count("fc.bias"),
                "input_size": args.input_size}

    def reference_module(self, config):
        return ShuffleNetV2(config["widths"], config["num_classes"])

    def input_shape(self, config):
        return (3, config["input_size"], config["input_size"])

    def define(self, net, weights, config, x):
        widths = config["widths"]
        y = _branch(net, weights, "conv1", x, widths[0], [(0, 1, 3, 2, False, 2)])
        y = layers.max_pool(net, y, "maxpool", 3, 2, 1)
        for stage, count, cout in zip((2, 3, 4), REPEATS, widths[1:4]):
            for i in range(count):
                y = inverted_residual(net, weights, f"stage{stage}.{i}", y, cout, 2 if i == 0 else 1)
            layers.rename(y, f"stage{stage}")
        y = _branch(net, weights, "conv5", y, widths[4], [(0, 1, 1, 1, False, 2)])
        y = layers.flatten(net, layers.global_avg_pool(net, y, "mean"), "flatten")
        return [layers.linear(net, weights, "fc", y, config["num_classes"])]
