"""MTCNN's three networks (Zhang et al. 2016, as trained in facenet-pytorch's pnet.pt, rnet.pt, onet.pt), twice:
PyTorch reference modules whose attribute names are the state_dict keys, and builders that mirror them layer by
layer on an INetworkDefinition.

P-Net  12x12 receptive field, fully convolutional: conv3 10, PReLU, max pool 2/2 (ceil), conv3 16, PReLU, conv3 32,
       PReLU; heads conv4_1 (2-way softmax: face probability) and conv4_2 (4 box offsets), one per 2-pixel step.
R-Net  24x24 crops: conv3 28, pool 3/2, conv3 48, pool 3/2, conv2 64, then dense4 128 and heads dense5_1
       (softmax) and dense5_2 (box offsets).
O-Net  48x48 crops: conv3 32, pool, conv3 64, pool, conv3 64, pool 2/2, conv2 128, dense5 256, heads dense6_1
       (softmax), dense6_2 (box offsets), dense6_3 (five landmarks: x1..x5, y1..y5, relative to the box).

The dense layers were trained (in Caffe, then TensorFlow) on the feature map flattened in (W, H, C) order, so both
the reference and the builder permute NCHW to N,W,H,C before flattening: without it the dense weights meet their
inputs in the wrong order and `validate` shows it at dense4 / dense5.
"""
from __future__ import annotations

import torch
from torch import nn

import layers

STAGES = ("pnet", "rnet", "onet")
CROP_SIZE = {"rnet": 24, "onet": 48}  # P-Net takes any size from 12x12 up
OUTPUTS = {"pnet": ("prob", "reg"), "rnet": ("prob", "reg"), "onet": ("prob", "reg", "landmarks")}


class PNet(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv1, self.prelu1 = nn.Conv2d(3, 10, 3), nn.PReLU(10)
        self.pool1 = nn.MaxPool2d(2, 2, ceil_mode=True)
        self.conv2, self.prelu2 = nn.Conv2d(10, 16, 3), nn.PReLU(16)
        self.conv3, self.prelu3 = nn.Conv2d(16, 32, 3), nn.PReLU(32)
        self.conv4_1, self.softmax4_1 = nn.Conv2d(32, 2, 1), nn.Softmax(dim=1)
        self.conv4_2 = nn.Conv2d(32, 4, 1)

    def forward(self, x):
        x = self.pool1(self.prelu1(self.conv1(x)))
        x = self.prelu3(self.conv3(self.prelu2(self.conv2(x))))
        return self.softmax4_1(self.conv4_1(x)), self.conv4_2(x)


def _flatten_whc(x: torch.Tensor) -> torch.Tensor:
    """NCHW -> N,W,H,C -> flat: the order the dense weights were trained on."""
    return x.permute(0, 3, 2, 1).reshape(len(x), -1)


class RNet(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv1, self.prelu1 = nn.Conv2d(3, 28, 3), nn.PReLU(28)
        self.pool1 = nn.MaxPool2d(3, 2, ceil_mode=True)
        self.conv2, self.prelu2 = nn.Conv2d(28, 48, 3), nn.PReLU(48)
        self.pool2 = nn.MaxPool2d(3, 2, ceil_mode=True)
        self.conv3, self.prelu3 = nn.Conv2d(48, 64, 2), nn.PReLU(64)
        self.dense4, self.prelu4 = nn.Linear(576, 128), nn.PReLU(128)
        self.dense5_1, self.softmax5_1 = nn.Linear(128, 2), nn.Softmax(dim=1)
        self.dense5_2 = nn.Linear(128, 4)

    def forward(self, x):
        x = self.pool1(self.prelu1(self.conv1(x)))
        x = self.pool2(self.prelu2(self.conv2(x)))
        x = self.prelu3(self.conv3(x))
        x = self.prelu4(self.dense4(_flatten_whc(x)))
        return self.softmax5_1(self.dense5_1(x)), self.dense5_2(x)


class ONet(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv1, self.prelu1 = nn.Conv2d(3, 32, 3), nn.PReLU(32)
        self.pool1 = nn.MaxPool2d(3, 2, ceil_mode=True)
        self.conv2, self.prelu2 = nn.Conv2d(32, 64, 3), nn.PReLU(64)
        self.pool2 = nn.MaxPool2d(3, 2, ceil_mode=True)
        self.conv3, self.prelu3 = nn.Conv2d(64, 64, 3), nn.PReLU(64)
        self.pool3 = nn.MaxPool2d(2, 2, ceil_mode=True)
        self.conv4, self.prelu4 = nn.Conv2d(64, 128, 2), nn.PReLU(128)
        self.dense5, self.prelu5 = nn.Linear(1152, 256), nn.PReLU(256)
        self.dense6_1, self.softmax6_1 = nn.Linear(256, 2), nn.Softmax(dim=1)
        self.dense6_2 = nn.Linear(256, 4)
        self.dense6_3 = nn.Linear(256, 10)

    def forward(self, x):
        x = self.pool1(self.prelu1(self.conv1(x)))
        x = self.pool2(self.prelu2(self.conv2(x)))
        x = self.pool3(self.prelu3(self.conv3(x)))
        x = self.prelu5(self.dense5(_flatten_whc(self.prelu4(self.conv4(x)))))
        return self.softmax6_1(self.dense6_1(x)), self.dense6_2(x), self.dense6_3(x)


MODULES = {"pnet": PNet, "rnet": RNet, "onet": ONet}


# ----------------------------------------------------------------------------------------------------------------
# builders: the same graphs on an INetworkDefinition, layer names = module names


def _conv_prelu(net, weights, x, index: int, out_channels: int, kernel: int):
    y = layers.conv2d(net, weights, f"conv{index}", x, out_channels, kernel)
    return layers.prelu(net, weights, f"prelu{index}", y)


def _dense_input(net, x):
    """The permute to N,W,H,C and the flatten in front of the first dense layer (see the module docstring)."""
    return layers.flatten(net, layers.transpose(net, x, (0, 3, 2, 1), "permute"), "flatten")


def define_pnet(net, weights, x) -> list:
    y = layers.max_pool(net, _conv_prelu(net, weights, x, 1, 10, 3), "pool1", 2, 2, ceil_mode=True)
    y = _conv_prelu(net, weights, _conv_prelu(net, weights, y, 2, 16, 3), 3, 32, 3)
    prob = layers.softmax(net, layers.conv2d(net, weights, "conv4_1", y, 2, 1), "softmax4_1", axis=1)
    return [prob, layers.conv2d(net, weights, "conv4_2", y, 4, 1)]


def define_rnet(net, weights, x) -> list:
    y = layers.max_pool(net, _conv_prelu(net, weights, x, 1, 28, 3), "pool1", 3, 2, ceil_mode=True)
    y = layers.max_pool(net, _conv_prelu(net, weights, y, 2, 48, 3), "pool2", 3, 2, ceil_mode=True)
    y = _dense_input(net, _conv_prelu(net, weights, y, 3, 64, 2))
    y = layers.prelu(net, weights, "prelu4", layers.linear(net, weights, "dense4", y, 128))
    prob = layers.softmax(net, layers.linear(net, weights, "dense5_1", y, 2), "softmax5_1", axis=1)
    return [prob, layers.linear(net, weights, "dense5_2", y, 4)]


def define_onet(net, weights, x) -> list:
    y = layers.max_pool(net, _conv_prelu(net, weights, x, 1, 32, 3), "pool1", 3, 2, ceil_mode=True)
    y = layers.max_pool(net, _conv_prelu(net, weights, y, 2, 64, 3), "pool2", 3, 2, ceil_mode=True)
    y = layers.max_pool(net, _conv_prelu(net, weights, y, 3, 64, 3), "pool3", 2, 2, ceil_mode=True)
    y = _dense_input(net, _conv_prelu(net, weights, y, 4, 128, 2))
    y = layers.prelu(net, weights, "prelu5", layers.linear(net, weights, "dense5", y, 256))
    prob = layers.softmax(net, layers.linear(net, weights, "dense6_1", y, 2), "softmax6_1", axis=1)
    return [prob, layers.linear(net, weights, "dense6_2", y, 4), layers.linear(net, weights, "dense6_3", y, 10)]


DEFINE = {"pnet": define_pnet, "rnet": define_rnet, "onet": define_onet}
