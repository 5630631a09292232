"""DenseNet-121/161/169/201 with torchvision's state_dict keys, written without torchvision.

Read from the weights: the initial width (`features.conv0`), the growth rate and bottleneck width (each dense layer's
`conv2`/`conv1` output channels), the layers per block (`denseblockN.denselayerM` keys) and the class count, all from
convolution weights, so that folded weights (no BatchNorm after a convolution) read the same. Dense layers are
pre-activation (BatchNorm, ReLU, convolution): norm1, the transitions' norm and norm5 follow no convolution and stay
scale layers, while the stem's conv0 + norm0 and each dense layer's conv1 + norm2 are conv_bn pairs (the pairs
zoo.engine.folding folds). Older torchvision files spell `norm.1` where the current keys say `norm1`: load them into
torchvision's DenseNet and save its state_dict first.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

import layers
from zoo.engine.classifier import ClassifierModel, add_classifier_flags
from zoo.engine.model import randomize_batchnorm

BN_EPS = 1e-5
# growth rate, layers per block, initial features
VARIANTS = {"densenet121": (32, (6, 12, 24, 16), 64), "densenet161": (48, (6, 12, 36, 24), 96),
            "densenet169": (32, (6, 12, 32, 32), 64), "densenet201": (32, (6, 12, 48, 32), 64)}
BN_SIZE = 4


class DenseLayer(nn.Module):
    def __init__(self, cin, growth, bottleneck):
        super().__init__()
        self.norm1, self.relu1 = nn.BatchNorm2d(cin), nn.ReLU()
        self.conv1 = nn.Conv2d(cin, bottleneck, 1, bias=False)
        self.norm2, self.relu2 = nn.BatchNorm2d(bottleneck), nn.ReLU()
        self.conv2 = nn.Conv2d(bottleneck, growth, 3, padding=1, bias=False)

    def forward(self, features: list):
        y = self.conv1(self.relu1(self.norm1(torch.cat(features, 1))))
        return self.conv2(self.relu2(self.norm2(y)))


class DenseBlock(nn.ModuleDict):
    def __init__(self, count, cin, growth, bottleneck):
        super().__init__()
        for i in range(count):
            self.add_module(f"denselayer{i + 1}", DenseLayer(cin + i * growth, growth, bottleneck))

    def forward(self, x):
        features = [x]
        for layer in self.values():
            features.append(layer(features))
        return torch.cat(features, 1)


class Transition(nn.Sequential):
    def __init__(self, cin, cout):
        super().__init__()
        self.norm, self.relu = nn.BatchNorm2d(cin), nn.ReLU()
        self.conv = nn.Conv2d(cin, cout, 1, bias=False)
        self.pool = nn.AvgPool2d(2, 2)


class DenseNet(nn.Module):
    def __init__(self, growth=32, blocks=(6, 12, 24, 16), init=64, num_classes=1000, bn_size=BN_SIZE):
        super().__init__()
        stem = [("conv0", nn.Conv2d(3, init, 7, 2, 3, bias=False)), ("norm0", nn.BatchNorm2d(init)),
                ("relu0", nn.ReLU()), ("pool0", nn.MaxPool2d(3, 2, 1))]
        self.features = nn.Sequential()
        for name, module in stem:
            self.features.add_module(name, module)
        c = init
        for i, count in enumerate(blocks):
            self.features.add_module(f"denseblock{i + 1}", DenseBlock(count, c, growth, bn_size * growth))
            c += count * growth
            if i < len(blocks) - 1:
                self.features.add_module(f"transition{i + 1}", Transition(c, c // 2))
                c //= 2
        self.features.add_module("norm5", nn.BatchNorm2d(c))
        self.classifier = nn.Linear(c, num_classes)

    def forward(self, x):
        y = F.adaptive_avg_pool2d(F.relu(self.features(x)), (1, 1))
        return self.classifier(torch.flatten(y, 1))


def read_config(weights, source: str) -> dict:
    if "features.conv0.weight" not in weights or "features.denseblock1.denselayer1.conv2.weight" not in weights:
        if "features.denseblock1.denselayer1.norm.1.weight" in weights:
            raise ValueError(f"{source}: old torchvision DenseNet keys ('norm.1'); load the file into torchvision's "
                             f"DenseNet and save its state_dict to get the current keys ('norm1')")
        raise ValueError(f"{source}: not DenseNet weights (no 'features.conv0.weight' / "
                         f"'features.denseblock1.denselayer1.conv2.weight' keys)")
    blocks = []
    while f"features.denseblock{len(blocks) + 1}.denselayer1.conv1.weight" in weights:
        n = 0
        while f"features.denseblock{len(blocks) + 1}.denselayer{n + 1}.conv1.weight" in weights:
            n += 1
        blocks.append(n)
    # Channel counts from the convolutions' value counts: conv0 is 7x7 over RGB, the first dense layer's conv1 a 1x1
    # over conv0's output and its conv2 a 3x3 over conv1's (weights.take checks the shapes when the network is built).
    layer = "features.denseblock1.denselayer1"
    init = weights.count("features.conv0.weight") // (3 * 7 * 7)
    bottleneck = weights.count(f"{layer}.conv1.weight") // max(init, 1)
    return {"growth": weights.count(f"{layer}.conv2.weight") // (9 * max(bottleneck, 1)), "bottleneck": bottleneck,
            "blocks": blocks, "init": init, "num_classes": weights.count("classifier.bias")}


def dense_layer(net, weights, prefix, features, growth, bottleneck):
    x = layers.concat(net, features, f"{prefix}/concat") if len(features) > 1 else features[0]
    y = layers.activation(net, layers.batch_norm(net, weights, f"{prefix}.norm1", x, BN_EPS), "relu", f"{prefix}.relu1")
    y = layers.conv_bn(net, weights, f"{prefix}.conv1", f"{prefix}.norm2", y, bottleneck, 1, eps=BN_EPS)
    y = layers.activation(net, y, "relu", f"{prefix}.relu2")
    return layers.rename(layers.conv2d(net, weights, f"{prefix}.conv2", y, growth, 3, 1, 1, bias=False), prefix)


def transition(net, weights, prefix, x):
    y = layers.activation(net, layers.batch_norm(net, weights, f"{prefix}.norm", x, BN_EPS), "relu", f"{prefix}.relu")
    y = layers.conv2d(net, weights, f"{prefix}.conv", y, x.shape[1] // 2, 1, bias=False)
    return layers.rename(layers.avg_pool(net, y, f"{prefix}.pool", 2, 2), prefix)


class DenseNetModel(ClassifierModel):
    name = "densenet"
    summary = "DenseNet-121/161/169/201 (torchvision keys), ImageNet pre-processing, top-5 classification."

    def add_arguments(self, parser):
        add_classifier_flags(parser, sorted(VARIANTS), "densenet121", "a multiple of 32")

    def random_module(self, args, seed):
        torch.manual_seed(seed)
        growth, blocks, init = VARIANTS[args.variant or "densenet121"]
        module = DenseNet(growth, blocks, init, args.num_classes)
        randomize_batchnorm(module, torch.Generator().manual_seed(seed))
        return module.eval()

    def config_from_weights(self, weights, args):
        config = read_config(weights, weights.source)
        spec = (config["growth"], tuple(config["blocks"]), config["init"])
        variant = next((v for v, s in VARIANTS.items() if s == spec and config["bottleneck"] == BN_SIZE * s[0]),
                       "densenet_custom")
        if args.variant and args.variant != variant:
            raise ValueError(f"--variant {args.variant} disagrees with {weights.source}, which holds a {variant}")
        if args.input_size % 32:
            raise ValueError(f"--input-size {args.input_size} is not a multiple of 32 (DenseNet's total stride)")
        return {"variant": variant, **config, "input_size": args.input_size}

    def reference_module(self, config):
        return DenseNet(config["growth"], config["blocks"], config["init"], config["num_classes"],
                        config["bottleneck"] // config["growth"])

    def input_shape(self, config):
        return (3, config["input_size"], config["input_size"])

    def define(self, net, weights, config, x):
        y = layers.conv_bn(net, weights, "features.conv0", "features.norm0", x, config["init"], 7, 2, 3, eps=BN_EPS)
        y = layers.activation(net, y, "relu", "features.relu0")
        y = layers.max_pool(net, y, "features.pool0", 3, 2, 1)
        for b, count in enumerate(config["blocks"], start=1):
            features = [y]
            for i in range(1, count + 1):
                features.append(dense_layer(net, weights, f"features.denseblock{b}.denselayer{i}", features,
                                            config["growth"], config["bottleneck"]))
            y = layers.concat(net, features, f"features.denseblock{b}")
            if b < len(config["blocks"]):
                y = transition(net, weights, f"features.transition{b}", y)
        y = layers.rename(layers.batch_norm(net, weights, "features.norm5", y, BN_EPS), "features")
        y = layers.global_avg_pool(net, layers.activation(net, y, "relu", "relu"), "adaptive_avg_pool")
        return [layers.linear(net, weights, "classifier", layers.flatten(net, y, "flatten"), config["num_classes"])]
