"""Classify, the head of the classification tables: Conv 1x1 to 1280 (`conv`) -> global average pool (`pool`) ->
flatten -> Dropout (`drop`, the identity in eval) -> Linear (`linear`); softmax in eval (ultralytics). YOLOv5 v7.0's
Classify (registered as `yolov5.Classify`) returns the logits."""
from __future__ import annotations

import torch
from torch import nn

import layers
from zoo.yolo.registry import Block, register, unscaled

from .conv import Conv, conv

HIDDEN = 1280  # fixed upstream


class Classify(nn.Module):
    softmax = True

    def __init__(self, c1: int, c2: int, k: int = 1, s: int = 1, p=None, g: int = 1):
        super().__init__()
        self.conv = Conv(c1, HIDDEN, k, s, p, g)
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.drop = nn.Dropout(p=0.0)
        self.linear = nn.Linear(HIDDEN, c2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.linear(self.drop(self.pool(self.conv(x)).flatten(1)))
        return y.softmax(1) if self.softmax else y


class ClassifyLogits(Classify):
    softmax = False


def classify(net, weights, prefix: str, x, c1: int, c2: int, k: int = 1, s: int = 1, p=None, g: int = 1,
             softmax: bool = True):
    y = conv(net, weights, f"{prefix}.conv", x, c1, HIDDEN, k, s, p, g)
    y = layers.global_avg_pool(net, y, f"{prefix}.pool")
    y = layers.flatten(net, y, f"{prefix}.drop")
    y = layers.linear(net, weights, f"{prefix}.linear", y, c2)
    return layers.softmax(net, y, prefix, axis=1) if softmax else layers.rename(y, prefix)


def classify_logits(net, weights, prefix: str, x, c1: int, c2: int, k: int = 1, s: int = 1, p=None, g: int = 1):
    return classify(net, weights, prefix, x, c1, c2, k, s, p, g, softmax=False)


register(Block("Classify", Classify, classify, resolve=unscaled, head=True),
         Block("yolov5.Classify", ClassifyLogits, classify_logits, resolve=unscaled, head=True))
