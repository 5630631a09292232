"""Blocks named like the PyTorch classes they mirror, keyed by their state_dict prefix."""
from __future__ import annotations

from wts.weight_map import WeightMap

from . import core


def conv_bn_act(net, weights: WeightMap, prefix: str, x, out_channels: int, kernel: int = 1, stride: int = 1,
                padding: int | None = None, groups: int = 1, act: str = "silu", eps: float = 1e-3):
    """Conv2d(bias=False) -> BatchNorm2d -> activation, as `<prefix>.conv`, `<prefix>.bn`, `<prefix>.act`.

    padding None means 'same' for odd kernels (k // 2), the convention of YOLO's Conv block. act None: no
    activation (ultralytics' Conv(act=False), an nn.Identity).
    """
    pad = kernel // 2 if padding is None else padding
    y = core.conv_bn(net, weights, f"{prefix}.conv", f"{prefix}.bn", x, out_channels, kernel, stride, pad, groups, eps)
    if act is None:
        return core.rename(y, prefix)
    return core.rename(core.activation(net, y, act, f"{prefix}.act"), prefix)


def bottleneck(net, weights: WeightMap, prefix: str, x, out_channels: int, shortcut: bool = True,
               expansion: float = 0.5, kernels: tuple[int, int] = (1, 3)):
    """cv1 (1x1) -> cv2 (3x3), plus the input when `shortcut` and the channel counts agree. YOLOv8's bottlenecks
    have kernels (3, 3)."""
    hidden = int(out_channels * expansion)
    y = conv_bn_act(net, weights, f"{prefix}.cv1", x, hidden, kernels[0])
    y = conv_bn_act(net, weights, f"{prefix}.cv2", y, out_channels, kernels[1])
    if shortcut and x.shape[1] == out_channels:
        return core.add(net, x, y, prefix)
    return core.rename(y, prefix)


def c3(net, weights: WeightMap, prefix: str, x, out_channels: int, repeats: int, shortcut: bool = True,
       kernels: tuple[int, int] = (1, 3)):
    """CSP bottleneck with 3 convs: cv3(cat(m(cv1(x)), cv2(x))), the bottleneck branch first. `kernels`: those of
    the bottlenecks ((3, 3) in YOLO11's C3k)."""
    hidden = out_channels // 2
    y = conv_bn_act(net, weights, f"{prefix}.cv1", x, hidden, 1)
    for i in range(repeats):
        y = bottleneck(net, weights, f"{prefix}.m.{i}", y, hidden, shortcut, expansion=1.0, kernels=kernels)
    if repeats:
        core.rename(y, f"{prefix}.m")
    side = conv_bn_act(net, weights, f"{prefix}.cv2", x, hidden, 1)
    cat = core.concat(net, [y, side], f"{prefix}/concat")
    return core.rename(conv_bn_act(net, weights, f"{prefix}.cv3", cat, out_channels, 1), prefix)


def sppf(net, weights: WeightMap, prefix: str, x, out_channels: int, kernel: int = 5, cv1_act: str | None = "silu"):
    """Spatial pyramid pooling, fast: three chained max pools (stride 1, 'same' padding) concatenated with x.
    `cv1_act`: cv1's activation (None in models built by ultralytics 8.4; see docs/yolov8.md)."""
    hidden = x.shape[1] // 2
    y = conv_bn_act(net, weights, f"{prefix}.cv1", x, hidden, 1, act=cv1_act)
    pooled = [y]
    for call in range(3):  # the same nn.MaxPool2d module, called three times: m, m#2, m#3
        name = f"{prefix}.m" if call == 0 else f"{prefix}.m#{call + 1}"
        pooled.append(core.max_pool(net, pooled[-1], name, kernel, stride=1, padding=kernel // 2))
    cat = core.concat(net, pooled, f"{prefix}/concat")
    return core.rename(conv_bn_act(net, weights, f"{prefix}.cv2", cat, out_channels, 1), prefix)


def classify(net, weights: WeightMap, prefix: str, x, num_classes: int, hidden: int = 1280, softmax: bool = False):
    """YOLO's Classify head: Conv 1x1 to `hidden` (`.conv`) -> global average pool (`.pool`) -> flatten (`.drop`:
    Dropout is the identity in eval) -> Linear (`.linear`); with `softmax` (ultralytics YOLOv8/11 in eval) the
    probabilities, else the logits (YOLOv5). The output is named `prefix`."""
    y = conv_bn_act(net, weights, f"{prefix}.conv", x, hidden, 1)
    y = core.global_avg_pool(net, y, f"{prefix}.pool")
    y = core.flatten(net, y, f"{prefix}.drop")
    y = core.linear(net, weights, f"{prefix}.linear", y, num_classes)
    return core.softmax(net, y, prefix, axis=1) if softmax else core.rename(y, prefix)
