"""LeNet-5 as tensorrtx builds it: input 1x1x32x32, conv1 6@5x5, ReLU, avg pool 2/2, conv2 16@5x5, ReLU,
avg pool 2/2, fc1 400->120 ReLU, fc2 120->84 ReLU, fc3 84->10, softmax. Its .wts files load as they are."""
from __future__ import annotations

import cv2
import numpy as np
import torch
from torch import nn

import layers
from zoo.engine.classifier import ClassifierModel


class LeNet5(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv1 = nn.Conv2d(1, 6, 5)
        self.pool1 = nn.AvgPool2d(2, 2)
        self.conv2 = nn.Conv2d(6, 16, 5)
        self.pool2 = nn.AvgPool2d(2, 2)
        self.fc1 = nn.Linear(400, 120)
        self.fc2 = nn.Linear(120, 84)
        self.fc3 = nn.Linear(84, 10)
        self.softmax = nn.Softmax(dim=1)

    def forward(self, x):
        x = self.pool1(torch.relu(self.conv1(x)))
        x = self.pool2(torch.relu(self.conv2(x)))
        x = torch.relu(self.fc1(x.flatten(1)))
        x = torch.relu(self.fc2(x))
        return self.softmax(self.fc3(x))


class LeNetModel(ClassifierModel):
    name = "lenet"
    summary = "LeNet-5 (tensorrtx's lenet): 1x32x32 grey input, 10 classes, softmax output."

    def random_module(self, args, seed):
        torch.manual_seed(seed)
        return LeNet5().eval()

    def config_from_weights(self, weights, args):
        expected = {"conv1.weight": 150, "conv1.bias": 6, "conv2.weight": 2400, "conv2.bias": 16,
                    "fc1.weight": 48000, "fc1.bias": 120, "fc2.weight": 10080, "fc2.bias": 84, "fc3.weight": 840,
                    "fc3.bias": 10}
        for key, count in expected.items():
            if weights.count(key) != count:
                raise ValueError(f"{weights.source}: key {key!r} has {weights.count(key)} values, LeNet-5 needs "
                                 f"{count}")
        return {"variant": "lenet5", "num_classes": 10}

    def reference_module(self, config):
        return LeNet5()

    def input_shape(self, config):
        return (1, 32, 32)

    def define(self, net, weights, config, x):
        y = layers.conv2d(net, weights, "conv1", x, 6, 5)
        y = layers.avg_pool(net, layers.activation(net, y, "relu", "conv1/relu"), "pool1", 2, 2)
        y = layers.conv2d(net, weights, "conv2", y, 16, 5)
        y = layers.avg_pool(net, layers.activation(net, y, "relu", "conv2/relu"), "pool2", 2, 2)
        y = layers.linear(net, weights, "fc1", layers.flatten(net, y, "flatten"), 120)
        y = layers.linear(net, weights, "fc2", layers.activation(net, y, "relu", "fc1/relu"), 84)
        y = layers.linear(net, weights, "fc3", layers.activation(net, y, "relu", "fc2/relu"), 10)
        return [layers.softmax(net, y, "softmax", axis=1)]

    def preprocess(self, image_bgr, config):
        grey = cv2.cvtColor(image_bgr, cv2.COLOR_BGR2GRAY)
        return (cv2.resize(grey, (32, 32), interpolation=cv2.INTER_LINEAR)[None] / 255.0).astype(np.float32)

    def probabilities(self, outputs):
        return next(iter(outputs.values())).float().cpu()  # the network already ends in softmax
