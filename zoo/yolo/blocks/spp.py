"""SPP: spatial pyramid pooling with parallel max pools, the block of the yolov3-spp table (facts:
docs/yolo-tables.md, read from ultralytics 8.4.190 `nn/modules/block.py`). SPPF, its faster chained form, is in
sppf's own file."""
from __future__ import annotations

import torch
from torch import nn

import layers
from zoo.yolo.blocks.conv import Conv, conv
from zoo.yolo.registry import Block, TableError, register


def _kernels(k) -> tuple[int, ...]:
    kernels = (k,) if isinstance(k, int) else tuple(k)
    if not kernels or any(not isinstance(v, int) or v < 1 or v % 2 == 0 for v in kernels):
        raise TableError(f"SPP kernels {k!r}: need odd sizes (each pool keeps the size with padding k // 2)")
    return kernels


class SPP(nn.Module):
    """cv1 Conv(c1, c1/2, 1); max pools of each kernel k (stride 1, padding k // 2), all on cv1's output;
    cv2 Conv over cat(cv1, pool_0, pool_1, ...)."""

    def __init__(self, c1: int, c2: int, k=(5, 9, 13)):
        super().__init__()
        kernels = _kernels(k)
        hidden = c1 // 2
        self.cv1 = Conv(c1, hidden, 1, 1)
        self.cv2 = Conv(hidden * (len(kernels) + 1), c2, 1, 1)
        self.m = nn.ModuleList(nn.MaxPool2d(kernel_size=v, stride=1, padding=v // 2) for v in kernels)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.cv1(x)
        return self.cv2(torch.cat([x] + [m(x) for m in self.m], 1))


def spp(net, weights, prefix: str, x, c1: int, c2: int, k=(5, 9, 13)):
    kernels = _kernels(k)
    hidden = c1 // 2
    y = conv(net, weights, f"{prefix}.cv1", x, c1, hidden, 1, 1)
    pooled = [layers.max_pool(net, y, f"{prefix}.m.{i}", v, stride=1, padding=v // 2) for i, v in enumerate(kernels)]
    cat = layers.concat(net, [y, *pooled], f"{prefix}/concat")
    return layers.rename(conv(net, weights, f"{prefix}.cv2", cat, hidden * (len(kernels) + 1), c2, 1, 1), prefix)


register(Block("SPP", SPP, spp))
