"""What GoogLeNet and Inception v3 share: torchvision's BasicConv2d (convolution without bias, BatchNorm with eps
0.001, ReLU) and the `transform_input` that the ported ImageNet weights expect."""
from __future__ import annotations

import numpy as np

from wts.weight_map import WeightMap

from . import core

INCEPTION_BN_EPS = 1e-3


def basic_conv2d(net, weights: WeightMap, prefix: str, x, kernel, stride=1, padding=0):
    """`<prefix>.conv` + `<prefix>.bn` + ReLU (a functional relu: the block's output is named `<prefix>`). The
    output channel count is the weights': `<prefix>.conv.weight`'s value count over in-channels x kernel area, a key
    that folded weights (no `<prefix>.bn.*`) have too (weights.take then checks the whole shape)."""
    kh, kw = (kernel, kernel) if isinstance(kernel, int) else kernel
    cout = weights.count(f"{prefix}.conv.weight") // (x.shape[1] * kh * kw)
    y = core.conv_bn(net, weights, f"{prefix}.conv", f"{prefix}.bn", x, cout, kernel, stride, padding,
                     eps=INCEPTION_BN_EPS)
    return core.activation(net, y, "relu", prefix)


def transform_input(net, x, mean, std, name: str = "transform_input"):
    """torchvision's transform_input=True: input normalised with `mean`/`std` (ImageNet's, given by the family) to
    the (x - 0.5) / 0.5 normalisation the ported weights were trained with, per channel
    x * std / 0.5 + (mean - 0.5) / 0.5."""
    scale = np.asarray(std, np.float32) / 0.5
    shift = (np.asarray(mean, np.float32) - 0.5) / 0.5
    return core.channel_affine(net, x, scale, shift, name)


def mark_auxiliary_used(weights: WeightMap, prefixes: tuple[str, ...]) -> list[str]:
    """The auxiliary classifiers' weights (training only: eval-mode forward never runs them) are accepted, not
    built; returns their keys."""
    keys = [k for k in weights.keys() if k.startswith(prefixes)]
    for key in keys:
        weights.raw(key)
    return keys
