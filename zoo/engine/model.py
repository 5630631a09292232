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

    def check_infer_arguments(self, args: argparse.Namespace, config: dict) -> None:
        """Check `infer` flags whose range depends on the model (e.g. class ids below the class count)."""

    def load_batch(self, paths: list[Path], config: dict, device: str = "cpu", max_pixels: int | None = None
                   ) -> tuple[Any, list[Any]]:
        """Inputs for `infer` from files: (float32 batch on `device`, per-item context for `records`); an image of
        more than `max_pixels` (default: zoo.vision.images') is refused from its header, before decoding."""
        from zoo.vision.images import DEFAULT_MAX_PIXELS, try_read_image
        limit = max_pixels or DEFAULT_MAX_PIXELS
        return self.load_images([(str(path), *try_read_image(path, limit)) for path in paths], config, device)

    def load_images(self, items: list[tuple[str, np.ndarray | None, str | None]], config: dict,
                    device: str = "cpu") -> tuple[Any, list[Any]]:
        """`load_batch` on images already decoded (files, uploads, Triton requests): each item is (name, BGR
        image or None, reason it could not be read). Image models implement this one; serving relies on it."""
        raise NotImplementedError(f"{self.name} does not take images")

    def records(self, outputs: dict[str, torch.Tensor], contexts: list[Any], config: dict,
                args: argparse.Namespace) -> list[dict]:
        """One JSON-able record per batch item."""
        raise NotImplementedError

    def aligned_output(self, config: dict, index: int, got: torch.Tensor, expected: torch.Tensor) -> torch.Tensor:
        """`got` (output `index` of the network) in the order of `expected` (the reference module's) where the two
        may list the same rows differently (an end-to-end head's rows of equal scores); as it is by default."""
        return got

    def sample_input(self, config: dict, batch: int, seed: int = 0) -> np.ndarray:
        """A deterministic input batch for validate and bench."""
        generator = np.random.default_rng(seed)
        return generator.random((batch, *self.input_shape(config)), dtype=np.float32)

    # --- what other commands ask; the defaults say "not offered" (no command probes with hasattr)
    def output_kind(self, config: dict) -> str:
        """What a Triton ensemble returns beside the JSON records: "detect" (boxes as tensors), "classify" (top
        classes and scores) or "other" (the records only)."""
        return "other"

    def agreement(self, fp32_outputs: dict, low_outputs: dict, config: dict) -> tuple[int, int] | None:
        """`validate --images`: (FP32 results the low-precision outputs reproduce, FP32 results) of one batch;
        None when the model has no such metric."""
        return None

    def agreement_terms(self, config: dict) -> tuple[str, str]:
        """What `agreement` counts and when one counts as reproduced, for `validate --images`' line."""
        return "detections", "IoU >= 0.5, same class"

    def bench_stages(self, run_network, images: list[np.ndarray], config: dict, args: argparse.Namespace,
                     device: str) -> dict | None:
        """`bench --source`: milliseconds per image of each stage (pre-processing, network, post-processing ...,
        total) over `images`; None when the model has no per-stage benchmark."""
        return None



def readable_images(items) -> tuple[list[np.ndarray], list[dict]]:
    """`load_images` items (name, image or None, reason) split into the decoded images and one context per item:
    {"file", "image"} for a decoded one, {"file", "error"} for one that could not be read (an error record, left
    out of the batch)."""
    images, contexts = [], []
    for name, image, reason in items:
        if image is None:
            contexts.append({"file": name, "error": f"{reason}, skipped"})
            continue
        images.append(image)
        contexts.append({"file": name, "image": image})
    return images, contexts

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


def randomize_layer_norms(module: torch.nn.Module, generator: torch.Generator) -> None:
    """LayerNorm affine parameters that are not the identity (ones and zeros at initialisation), so a swapped or
    missing scale or bias shows in validation."""
    for m in module.modules():
        if isinstance(m, torch.nn.LayerNorm) and m.elementwise_affine:
            with torch.no_grad():
                m.weight.copy_(torch.rand(m.weight.shape, generator=generator) * 0.5 + 0.75)
                m.bias.copy_(torch.randn(m.bias.shape, generator=generator) * 0.1)


def random_conv_(conv: torch.nn.Conv2d, generator: torch.Generator, bias_std: float = 0.1,
                 bias_mean: float = 0.0) -> None:
    """Seeded weights ~ N(0, 1/fan_in), which keep activations O(1) through any depth, and biases
    ~ N(bias_mean, bias_std)."""
    fan_in = conv.in_channels // conv.groups * conv.kernel_size[0] * conv.kernel_size[1]
    with torch.no_grad():
        conv.weight.copy_(torch.randn(conv.weight.shape, generator=generator) / fan_in ** 0.5)
        if conv.bias is not None:
            conv.bias.copy_(torch.randn(conv.bias.shape, generator=generator) * bias_std + bias_mean)


def random_batchnorm_affine_(bn: torch.nn.BatchNorm2d, generator: torch.Generator) -> None:
    """gamma ~ U(0.5, 1.5), beta ~ N(0, 0.2)."""
    with torch.no_grad():
        bn.weight.copy_(torch.rand(bn.num_features, generator=generator) + 0.5)
        bn.bias.copy_(torch.randn(bn.num_features, generator=generator) * 0.2)


@torch.no_grad()
def batchnorm_statistics_from_(model: torch.nn.Module, image: torch.Tensor, generator: torch.Generator,
                               extra_hooks=()) -> None:
    """Running statistics of every BatchNorm2d of `model` from one float64 forward pass over `image`, perturbed per
    channel (running_mean = mean + N(0, 0.1) * std, running_var = var * U(0.5, 2)), so that no BatchNorm is an
    identity and none normalizes exactly. Deep random detectors need this: fixed statistics either vanish or explode
    over their 20-40 convolutions. The float64 pass makes the result independent of the thread count.
    `extra_hooks`: (module, forward hook) pairs that observe the same pass."""

    def set_stats(bn: torch.nn.BatchNorm2d, inputs: tuple[torch.Tensor]) -> None:
        x = inputs[0]
        mean, var = x.mean((0, 2, 3)), x.var((0, 2, 3), unbiased=False)
        c = bn.num_features
        bn.running_mean.copy_(mean + torch.randn(c, generator=generator, dtype=x.dtype) * 0.1 * var.sqrt())
        bn.running_var.copy_(var * (torch.rand(c, generator=generator, dtype=x.dtype) * 1.5 + 0.5))

    was_training, dtype = model.training, next(model.parameters()).dtype
    bns = [m for m in model.modules() if isinstance(m, torch.nn.BatchNorm2d)]
    hooks = [bn.register_forward_pre_hook(set_stats) for bn in bns]
    hooks += [module.register_forward_hook(hook) for module, hook in extra_hooks]
    try:
        model.to(torch.float64).eval()(image)
    finally:
        for h in hooks:
            h.remove()
        model.to(dtype).train(was_training)
