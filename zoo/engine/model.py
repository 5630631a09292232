"""What a model of the zoo provides to the shared CLI: a subclass of `ZooModel` per architecture.

A model answers five questions: how to make seeded random weights, how to read its configuration from weights,
its PyTorch reference module, how to define its network on an INetworkDefinition, and how to turn files into input
batches and outputs into records. Everything else (build, infer, validate, bench, engine files, backends) is shared.
"""
from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

import numpy as np
import torch

from wts.weight_map import WeightMap


class ZooModel:
    name: str = ""
    input_name: str = "input"
    summary: str = ""

    # --- configuration and weights
    def add_arguments(self, parser: argparse.ArgumentParser) -> None:
        """Model flags used when no weights are given (e.g. --depth), and input-size flags."""

    def random_module(self, args: argparse.Namespace, seed: int) -> torch.nn.Module:
        """The reference module with seeded random weights and randomized BatchNorm statistics."""
        raise NotImplementedError

    def config_from_weights(self, weights: WeightMap, args: argparse.Namespace) -> dict:
        """The JSON-able configuration (variant, classes, ...) read from the weights' keys and shapes."""
        raise NotImplementedError

    def variant(self, config: dict) -> str:
        return config.get("variant", self.name)

    def reference_module(self, config: dict) -> torch.nn.Module:
        raise NotImplementedError

    def input_shape(self, config: dict) -> tuple[int, ...]:
        """The input's shape without the batch dimension."""
        raise NotImplementedError

    def define(self, net, weights: WeightMap, config: dict, x) -> list:
        """Add the layers to `net` from input tensor `x`; return the output tensors (named)."""
        raise NotImplementedError

    # --- inference I/O
    def add_infer_arguments(self, parser: argparse.ArgumentParser) -> None:
        """Flags of `infer` that only this model has (thresholds, ...)."""

    def load_batch(self, paths: list[Path], config: dict, device: str = "cpu") -> tuple[Any, list[Any]]:
        """Inputs for `infer` from files: (float32 batch on `device`, per-item context for `records`)."""
        raise NotImplementedError

    def records(self, outputs: dict[str, torch.Tensor], contexts: list[Any], config: dict,
                args: argparse.Namespace) -> list[dict]:
        """One JSON-able record per batch item."""
        raise NotImplementedError

    def sample_input(self, config: dict, batch: int, seed: int = 0) -> np.ndarray:
        """A deterministic input batch for validate and bench."""
        generator = np.random.default_rng(seed)
        return generator.random((batch, *self.input_shape(config)), dtype=np.float32)


def load_state_into(module: torch.nn.Module, weights: WeightMap) -> torch.nn.Module:
    """Copy a weight map (flat or shaped) into a module's state_dict, checking every key and shape. Folded weights
    (conv biases, no BatchNorm keys) first fold the module's matching BatchNorms (zoo.engine.folding)."""
    from .folding import match_folding
    module = match_folding(module, weights.keys())
    state = {}
    for key, value in module.state_dict().items():
        array = weights.take(key, tuple(value.shape), np.float32)
        state[key] = torch.from_numpy(array).to(value.dtype)
    module.load_state_dict(state)
    return module.eval()


def state_dict_arrays(module: torch.nn.Module) -> dict[str, np.ndarray]:
    return {k: v.detach().cpu().float().numpy() for k, v in module.state_dict().items()}


def randomize_batchnorm(module: torch.nn.Module, generator: torch.Generator) -> None:
    """BatchNorm statistics that are not the identity, so a wrong eps or a missing BN shows in validation."""
    for m in module.modules():
        if isinstance(m, torch.nn.BatchNorm2d):
            c = m.num_features
            with torch.no_grad():
                m.weight.copy_(torch.rand(c, generator=generator) * 0.5 + 0.75)
                m.bias.copy_(torch.randn(c, generator=generator) * 0.1)
                m.running_mean.copy_(torch.randn(c, generator=generator) * 0.1)
                m.running_var.copy_(torch.rand(c, generator=generator) * 1.5 + 0.5)
