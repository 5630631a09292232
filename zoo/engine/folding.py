"""BatchNorm folded into the convolution before it, for any PyTorch module of the zoo.

Weights often arrive folded: ONNX exports (ultralytics exports fuse every Conv+BatchNorm), fused deployment
checkpoints, triple-Mu's pickles. Such weights have a conv bias and no BatchNorm keys. The builders handle them
through `layers.conv_bn` (a biased convolution); validation needs the matching reference module, which this module
makes from the unfolded one: each foldable BatchNorm2d becomes an `nn.Identity` and its convolution gets a bias, so
the module's state_dict keys become exactly those of the folded weights.

A (conv, bn) pair is found structurally: within one parent module, an `nn.Conv2d` registered immediately before an
`nn.BatchNorm2d` of as many features (`Conv.conv`/`Conv.bn`, torchvision's `conv1`/`bn1`, `downsample.0`/`.1`).
"""
from __future__ import annotations

from typing import Iterable

import torch
from torch import nn


def conv_bn_pairs(module: nn.Module) -> list[tuple[str, str]]:
    """(conv name, bn name) of every conv followed by its BatchNorm2d, in module order."""
    pairs = []
    for parent_name, parent in module.named_modules():
        children = list(parent.named_children())
        for (conv_name, conv), (bn_name, bn) in zip(children, children[1:]):
            if (isinstance(conv, nn.Conv2d) and isinstance(bn, nn.BatchNorm2d)
                    and bn.num_features == conv.out_channels):
                prefix = f"{parent_name}." if parent_name else ""
                pairs.append((prefix + conv_name, prefix + bn_name))
    return pairs


@torch.no_grad()
def fold_batchnorm(module: nn.Module, pairs: Iterable[tuple[str, str]] | None = None) -> nn.Module:
    """Fold each BatchNorm2d of `pairs` (default: all) into its convolution, in place, with the eval-mode
    arithmetic: w' = w * g / sqrt(var + eps), b' = (b - mean) * g / sqrt(var + eps) + beta. Returns the module."""
    for conv_name, bn_name in (conv_bn_pairs(module) if pairs is None else pairs):
        conv, bn = module.get_submodule(conv_name), module.get_submodule(bn_name)
        scale = bn.weight / torch.sqrt(bn.running_var + bn.eps)
        bias = conv.bias if conv.bias is not None else torch.zeros_like(bn.running_mean)
        conv.weight.mul_(scale.view(-1, 1, 1, 1))
        conv.bias = nn.Parameter((bias - bn.running_mean) * scale + bn.bias, requires_grad=False)
        _replace(module, bn_name, nn.Identity())
    return module


def match_folding(module: nn.Module, keys: Iterable[str]) -> nn.Module:
    """Fold, in place, the pairs whose weights in `keys` are folded (`<conv>.bias` present, no
    `<bn>.running_mean`), after fusing the re-parameterised blocks that `keys` hold fused, so that the module's
    state_dict has the keys of those weights. The values are placeholders until the weights are loaded. Returns the
    module."""
    keys = set(keys)
    match_reparameterized(module, keys)
    folded = [(c, b) for c, b in conv_bn_pairs(module) if f"{b}.running_mean" not in keys and f"{c}.bias" in keys]
    return fold_batchnorm(module, folded) if folded else module


def match_reparameterized(module: nn.Module, keys: Iterable[str]) -> nn.Module:
    """Fuse, in place, each re-parameterised block whose weights in `keys` are its fused form (RepConv, RepVGGDW:
    parallel branches saved as one convolution). Such a block says so itself: `fused_in(keys, its name)`, and
    `fuse()` makes the form. Returns the module."""
    keys = set(keys)
    for name, sub in list(module.named_modules()):
        fused_in = getattr(sub, "fused_in", None)
        if fused_in is not None and fused_in(keys, name):
            sub.fuse()
    return module


def _replace(module: nn.Module, name: str, new: nn.Module) -> None:
    parent_name, _, child = name.rpartition(".")
    setattr(module.get_submodule(parent_name) if parent_name else module, child, new)
