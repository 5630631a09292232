"""tensorrtx's first hello-world: one linear layer 1 -> 1 (keys `linear.weight`, `linear.bias`), input 1x1x1."""
from __future__ import annotations

import numpy as np
import torch
from torch import nn

import layers
from zoo.engine.model import ZooModel


class MLP(nn.Module):
    def __init__(self):
        super().__init__()
        self.linear = nn.Linear(1, 1)

    def forward(self, x):
        return self.linear(x.flatten(1)).reshape(-1, 1, 1, 1)


class MLPModel(ZooModel):
    name = "mlp"
    summary = "One linear layer, 1 -> 1 (tensorrtx's mlp): the smallest end-to-end check of the zoo."

    def random_module(self, args, seed):
        torch.manual_seed(seed)
        return MLP().eval()

    def config_from_weights(self, weights, args):
        for key in ("linear.weight", "linear.bias"):
            if weights.count(key) != 1:
                raise ValueError(f"{weights.source}: key {key!r} has {weights.count(key)} values; the MLP has 1")
        return {"variant": "mlp"}

    def reference_module(self, config):
        return MLP()

    def input_shape(self, config):
        return (1, 1, 1)

    def define(self, net, weights, config, x):
        flat = layers.flatten(net, x, "flatten")
        y = layers.linear(net, weights, "linear", flat, 1)
        return [layers.reshape(net, y, (0, 1, 1, 1), "output")]

    def load_images(self, items, config, device="cpu"):
        raise ValueError("the MLP takes a .npy tensor of shape (N, 1, 1, 1) as --source, not images")

    def records(self, outputs, contexts, config, args):
        values = next(iter(outputs.values())).float().cpu().reshape(-1).tolist()
        return [{"index": i, "output": v} for i, v in enumerate(values)]

    def sample_input(self, config, batch, seed=0):
        return np.random.default_rng(seed).standard_normal((batch, 1, 1, 1)).astype(np.float32)
