"""Classifier heads that several families share."""
from __future__ import annotations

from wts.weight_map import WeightMap

from . import core
from .pooling import adaptive_avg_pool


def vgg_head(net, weights: WeightMap, features, pooled: int, hidden: int, num_classes: int, dense=(0, 3, 6)):
    """avgpool (adaptive, pooled x pooled), flatten, then `classifier`: Linear-ReLU-Dropout twice and a Linear, at
    indices `dense` (VGG's: 0, 3, 6; AlexNet puts its dropouts first: 1, 4, 6). Dropout is the identity here."""
    y = core.flatten(net, adaptive_avg_pool(net, features, "avgpool", pooled), "flatten")
    for index in dense[:2]:
        y = core.linear(net, weights, f"classifier.{index}", y, hidden)
        y = core.activation(net, y, "relu", f"classifier.{index + 1}")
    return core.rename(core.linear(net, weights, f"classifier.{dense[2]}", y, num_classes), "classifier")
