"""Re-parameterised convolutions: RepConv (YOLOv9's RepBottleneck, RT-DETR's RepC3) and RepVGGDW (YOLOv10's large
kernel CIB). Facts: docs/yolov10-v9.md (read from ultralytics 8.4.190 `nn/modules/conv.py` and `block.py`).

Both train as parallel branches whose sum is one convolution: RepConv = act(conv1 (k x k, BN) + conv2 (1 x 1, BN)
[+ bn(x), an identity branch, when built with bn=True, c1 == c2 and stride 1]); RepVGGDW = SiLU(conv (7x7 depthwise,
BN) + conv1 (3x3 depthwise, BN)). A checkpoint holds either form, as its keys say: the branches (what training
saves) or the fused one (`<prefix>.conv.weight` and `.bias`, what ultralytics' `fuse()` leaves).

The network: fused weights are one biased convolution. Branch weights are, in FP32, the branches as the module
computes them (so validation compares each), and in FP16/INT8 one convolution whose kernel and bias are summed in
FP32 first (each branch's BatchNorm folded, the smaller kernels zero-padded to the large one, the identity a centred
one per channel): the same policy as `layers.conv_bn` for a BatchNorm.

The reference modules follow the keys the same way: `fused_in(keys, prefix)` says whether a checkpoint holds the
fused form and `fuse()` turns the module into it (zoo.engine.folding.match_folding calls both)."""
from __future__ import annotations

import numpy as np
import torch
from torch import nn

import layers
from layers.precision import precision_of
from zoo.yolo.registry import Block, TableError, register

from .conv import BN_EPS, Conv, conv


def _fused_keys(keys, prefix: str, branch: str) -> bool:
    """A fused block has `<prefix>.conv.weight` and no key of its first branch (`<prefix>.<branch>.*`)."""
    return f"{prefix}.conv.weight" in keys and not any(k.startswith(f"{prefix}.{branch}.") for k in keys)


def _fused_conv(branches: list[tuple[torch.Tensor, torch.Tensor]], like: nn.Conv2d) -> nn.Conv2d:
    """One biased Conv2d shaped like `like` holding the sum of (kernel, bias) pairs (smaller kernels centred)."""
    fused = nn.Conv2d(like.in_channels, like.out_channels, like.kernel_size, like.stride, like.padding,
                      groups=like.groups, bias=True, device=like.weight.device)
    kh, kw = like.kernel_size
    weight = torch.zeros_like(like.weight)
    bias = torch.zeros(like.out_channels, device=like.weight.device)
    for w, b in branches:
        ph, pw = (kh - w.shape[2]) // 2, (kw - w.shape[3]) // 2
        weight = weight + nn.functional.pad(w, (pw, pw, ph, ph))
        bias = bias + b
    fused.weight.data, fused.bias.data = weight, bias
    return fused


def _conv_bn_kernel(block: Conv) -> tuple[torch.Tensor, torch.Tensor]:
    """(kernel, bias) of a Conv block's conv and eval-mode BatchNorm (or of its already folded conv)."""
    if isinstance(block.bn, nn.BatchNorm2d):
        bn = block.bn
        scale = bn.weight / torch.sqrt(bn.running_var + bn.eps)
        return block.conv.weight * scale.view(-1, 1, 1, 1), bn.bias - bn.running_mean * scale
    return block.conv.weight, block.conv.bias


class RepConv(nn.Module):
    """RepConv(c1, c2, k=3, s=1, p=1, g=1, d=1, act=True, bn=False). `act=True` is SiLU whatever the table's
    default activation (upstream gives RepConv a default of its own)."""

    def __init__(self, c1: int, c2: int, k: int = 3, s: int = 1, p: int = 1, g: int = 1, d: int = 1, act=True,
                 bn: bool = False, deploy: bool = False):
        super().__init__()
        if k != 3 or p != 1 or d != 1:
            raise TableError(f"RepConv(k={k}, p={p}, d={d}): only the 3x3 form with padding 1 exists")
        self.c1, self.c2, self.g, self.s = c1, c2, g, s
        self.act = nn.SiLU() if act is True else act if isinstance(act, nn.Module) else nn.Identity()
        self.bn = nn.BatchNorm2d(c1, eps=BN_EPS) if bn and c1 == c2 and s == 1 else None
        self.conv1 = Conv(c1, c2, k, s, p=p, g=g, act=False)
        self.conv2 = Conv(c1, c2, 1, s, p=p - k // 2, g=g, act=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if hasattr(self, "conv"):
            return self.act(self.conv(x))
        identity = 0 if self.bn is None else self.bn(x)
        return self.act(self.conv1(x) + self.conv2(x) + identity)

    @staticmethod
    def fused_in(keys, prefix: str) -> bool:
        return _fused_keys(keys, prefix, "conv1")

    @torch.no_grad()
    def fuse(self) -> None:
        """The deploy form: one biased 3x3 `conv` (conv1, conv2 and bn removed)."""
        if hasattr(self, "conv"):
            return
        branches = [_conv_bn_kernel(self.conv1), _conv_bn_kernel(self.conv2)]
        if self.bn is not None:
            per_group = self.c1 // self.g
            eye = torch.zeros(self.c1, per_group, 1, 1, device=self.bn.weight.device)
            eye[torch.arange(self.c1), torch.arange(self.c1) % per_group] = 1
            scale = self.bn.weight / torch.sqrt(self.bn.running_var + self.bn.eps)
            branches.append((eye * scale.view(-1, 1, 1, 1), self.bn.bias - self.bn.running_mean * scale))
        self.conv = _fused_conv(branches, self.conv1.conv)
        del self.conv1, self.conv2
        self.bn = None


def _activation(net, y, act, name: str):
    if act is True:
        return layers.activation(net, y, "silu", name)
    if act is False or act is None:
        return y
    raise TableError(f"{name}: RepConv act={act!r}; the network builds True (SiLU) or False")


def _identity_kernel(channels: int, per_group: int) -> np.ndarray:
    eye = np.zeros((channels, per_group, 1, 1), np.float32)
    eye[np.arange(channels), np.arange(channels) % per_group] = 1
    return eye


def _summed(branches: list[tuple[np.ndarray, np.ndarray]], k: int) -> tuple[np.ndarray, np.ndarray]:
    """Kernels (smaller ones centred in k x k) and biases summed in FP32."""
    weight = np.zeros((*branches[0][0].shape[:2], k, k), np.float32)
    for w, _ in branches:
        pad = (k - w.shape[2]) // 2
        weight[:, :, pad:pad + w.shape[2], pad:pad + w.shape[3]] += w
    return weight, np.sum([b for _, b in branches], axis=0).astype(np.float32)


def rep_conv(net, weights, prefix: str, x, c1: int, c2: int, k: int = 3, s: int = 1, p: int = 1, g: int = 1,
             d: int = 1, act=True, bn: bool = False, deploy: bool = False):
    if k != 3 or p != 1 or d != 1:
        raise TableError(f"{prefix}: RepConv(k={k}, p={p}, d={d}): only the 3x3 form with padding 1 exists")
    identity = bn and c1 == c2 and s == 1
    if f"{prefix}.conv.weight" in weights:  # fused: one biased convolution
        y = layers.conv2d(net, weights, f"{prefix}.conv", x, c2, 3, s, 1, g)
    elif precision_of(weights).mode == "fp32":
        parts = [conv(net, weights, f"{prefix}.conv1", x, c1, c2, 3, s, 1, g, act=False),
                 conv(net, weights, f"{prefix}.conv2", x, c1, c2, 1, s, 0, g, act=False)]
        if identity:
            parts.append(layers.batch_norm(net, weights, f"{prefix}.bn", x, BN_EPS))
        y = layers.add(net, parts[0], parts[1], f"{prefix}/add")
        if identity:
            y = layers.add(net, y, parts[2], f"{prefix}/add_identity")
    else:
        per_group = c1 // g
        branches = [layers.conv_bn_arrays(weights, f"{prefix}.conv1.conv", f"{prefix}.conv1.bn", c2, per_group, 3,
                                          BN_EPS),
                    layers.conv_bn_arrays(weights, f"{prefix}.conv2.conv", f"{prefix}.conv2.bn", c2, per_group, 1,
                                          BN_EPS)]
        if identity:
            scale, shift = layers.batch_norm_affine(weights, f"{prefix}.bn", c1, BN_EPS)
            branches.append((_identity_kernel(c1, per_group) * scale.reshape(-1, 1, 1, 1), shift))
        w, b = _summed(branches, 3)
        y = layers.conv2d_arrays(net, weights, f"{prefix}.conv", x, w, b, s, 1, g)
    return layers.rename(_activation(net, y, act, f"{prefix}.act"), prefix)


class RepVGGDW(nn.Module):
    """RepVGGDW(ed): SiLU(depthwise 7x7 Conv + depthwise 3x3 Conv), both without activation, channels kept."""

    def __init__(self, ed: int):
        super().__init__()
        self.conv = Conv(ed, ed, 7, 1, 3, g=ed, act=False)
        self.conv1 = Conv(ed, ed, 3, 1, 1, g=ed, act=False)
        self.dim = ed
        self.act = nn.SiLU()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not hasattr(self, "conv1"):
            return self.act(self.conv(x))
        return self.act(self.conv(x) + self.conv1(x))

    @staticmethod
    def fused_in(keys, prefix: str) -> bool:
        return _fused_keys(keys, prefix, "conv1")

    @torch.no_grad()
    def fuse(self) -> None:
        """The deploy form: `conv` becomes one biased 7x7 depthwise Conv2d (conv1 removed)."""
        if not hasattr(self, "conv1"):
            return
        self.conv = _fused_conv([_conv_bn_kernel(self.conv), _conv_bn_kernel(self.conv1)], self.conv.conv)
        del self.conv1


def rep_vgg_dw(net, weights, prefix: str, x, ed: int):
    if f"{prefix}.conv.weight" in weights:  # fused
        y = layers.conv2d(net, weights, f"{prefix}.conv", x, ed, 7, 1, 3, ed)
    elif precision_of(weights).mode == "fp32":
        large = conv(net, weights, f"{prefix}.conv", x, ed, ed, 7, 1, 3, g=ed, act=False)
        small = conv(net, weights, f"{prefix}.conv1", x, ed, ed, 3, 1, 1, g=ed, act=False)
        y = layers.add(net, large, small, f"{prefix}/add")
    else:
        w, b = _summed([layers.conv_bn_arrays(weights, f"{prefix}.conv.conv", f"{prefix}.conv.bn", ed, 1, 7, BN_EPS),
                        layers.conv_bn_arrays(weights, f"{prefix}.conv1.conv", f"{prefix}.conv1.bn", ed, 1, 3,
                                              BN_EPS)], 7)
        y = layers.conv2d_arrays(net, weights, f"{prefix}.conv", x, w, b, 1, 3, ed)
    return layers.rename(layers.activation(net, y, "silu", f"{prefix}.act"), prefix)


register(Block("RepConv", RepConv, rep_conv),
         Block("RepVGGDW", RepVGGDW, rep_vgg_dw))
