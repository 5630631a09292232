"""Channel shuffle (ShuffleNet v2) as TensorRT shuffle layers, channel split as gathers (see channel_split).

channel_shuffle(x, g) is PyTorch's view(N, g, C/g, H, W) -> transpose(1, 2) -> view(N, C, H, W): two shuffle layers
(reshape then transpose; reshape). The batch dimension may be dynamic: 0 in reshape_dims copies it.
"""
from __future__ import annotations

import numpy as np

from .core import constant, named


def channel_shuffle(net, x, groups: int, name: str):
    n_channels, h, w = x.shape[1], x.shape[2], x.shape[3]
    if n_channels % groups:
        raise ValueError(f"{name}: {n_channels} channels do not split into {groups} groups")
    split = net.add_shuffle(x)
    split.reshape_dims = (0, groups, n_channels // groups, h, w)
    split.second_transpose = (0, 2, 1, 3, 4)
    grouped = named(split, f"{name}/transpose")
    merge = net.add_shuffle(grouped)
    merge.reshape_dims = (0, n_channels, h, w)
    return named(merge, name)


def channel_split(net, x, name: str, parts: int = 2) -> list:
    """x.chunk(parts, dim=1) for a channel count that `parts` divides: tensors `<name>/0`, `<name>/1`, ...

    A static slice layer needs every output dimension at build time, and the zoo's batch dimension is dynamic
    (a slice of a dynamic tensor takes its size as a shape tensor). A gather along the channel axis with constant
    indices selects the same channels with no shape tensor, on every TensorRT version."""
    n_channels = x.shape[1]
    if n_channels % parts:
        raise ValueError(f"{name}: {n_channels} channels do not split into {parts} equal parts")
    size = n_channels // parts
    out = []
    for i in range(parts):
        indices = constant(net, np.arange(i * size, (i + 1) * size, dtype=np.int32), f"{name}/{i}/indices")
        out.append(named(net.add_gather(x, indices, 1), f"{name}/{i}"))
    return out
