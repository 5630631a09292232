"""PyTorch reference modules that several classifier families share, written here without torchvision.

Attribute names follow torchvision's so that state_dict keys are torchvision's: `Conv2dNormActivation` is a
Sequential (conv `0`, norm `1`, activation `2`), `SqueezeExcitation` has `avgpool`, `fc1`, `activation`, `fc2`,
`scale_activation`.
"""
from __future__ import annotations

from torch import nn

ACTIVATIONS = {"relu": nn.ReLU, "relu6": nn.ReLU6, "silu": nn.SiLU, "sigmoid": nn.Sigmoid,
               "hardsigmoid": nn.Hardsigmoid, "hardswish": nn.Hardswish}


def activation_module(kind: str | None) -> nn.Module | None:
    return None if kind is None else ACTIVATIONS[kind]()


class Conv2dNormActivation(nn.Sequential):
    """Conv2d(bias=False, padding (k-1)//2) -> BatchNorm2d(eps) -> activation (none for a projection)."""

    def __init__(self, cin: int, cout: int, kernel: int = 3, stride: int = 1, groups: int = 1,
                 activation: str | None = "relu", eps: float = 1e-5):
        layers = [nn.Conv2d(cin, cout, kernel, stride, (kernel - 1) // 2, groups=groups, bias=False),
                  nn.BatchNorm2d(cout, eps=eps)]
        if activation is not None:
            layers.append(activation_module(activation))
        super().__init__(*layers)


class SqueezeExcitation(nn.Module):
    def __init__(self, channels: int, squeeze: int, activation: str = "relu", gate: str = "sigmoid"):
        super().__init__()
        self.avgpool = nn.AdaptiveAvgPool2d(1)
        self.fc1 = nn.Conv2d(channels, squeeze, 1)
        self.fc2 = nn.Conv2d(squeeze, channels, 1)
        self.activation = activation_module(activation)
        self.scale_activation = activation_module(gate)

    def forward(self, x):
        scale = self.scale_activation(self.fc2(self.activation(self.fc1(self.avgpool(x)))))
        return scale * x
