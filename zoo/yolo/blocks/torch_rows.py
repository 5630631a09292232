"""Rows that name a torch.nn layer directly: nn.MaxPool2d and nn.ZeroPad2d (yolov3-tiny), nn.ConvTranspose2d
(yolov6). The module is the torch.nn class itself, built from the row's args as the upstream walker does (facts:
docs/yolo-tables.md, read from ultralytics 8.4.190 `nn/tasks.py` parse_model). nn.Upsample is in conv's file."""
from __future__ import annotations

from torch import nn

import layers
from zoo.yolo.registry import Block, TableError, register, same, scaled


def _single_int(value, what: str) -> int:
    if not isinstance(value, int) or isinstance(value, bool):
        raise TableError(f"{what} {value!r}: only a single int (the same for H and W) is supported")
    return value


def max_pool_module(kernel_size, stride=None, padding=0, dilation=1, return_indices=False, ceil_mode=False):
    _max_pool_checks(kernel_size, stride, padding, dilation, return_indices)
    return nn.MaxPool2d(kernel_size, stride, padding, dilation, return_indices, ceil_mode)


def _max_pool_checks(kernel_size, stride, padding, dilation, return_indices):
    for value, what in ((kernel_size, "nn.MaxPool2d kernel_size"), (padding, "nn.MaxPool2d padding")):
        _single_int(value, what)
    if stride is not None:
        _single_int(stride, "nn.MaxPool2d stride")
    if dilation != 1 or return_indices:
        raise TableError(f"nn.MaxPool2d(dilation={dilation!r}, return_indices={return_indices!r}): only dilation 1 "
                         f"without indices")


def max_pool(net, weights, prefix: str, x, kernel_size, stride=None, padding=0, dilation=1, return_indices=False,
             ceil_mode=False):
    """Stride None is the window, as torch's; ceil_mode as TensorRT's EXPLICIT_ROUND_UP (layers.max_pool)."""
    _max_pool_checks(kernel_size, stride, padding, dilation, return_indices)
    return layers.max_pool(net, x, prefix, kernel_size, stride, padding, bool(ceil_mode))


def _zero_pad_amounts(padding) -> tuple[int, int, int, int]:
    """torch's order: (left, right, top, bottom); one int pads every side."""
    if isinstance(padding, int) and not isinstance(padding, bool):
        return (padding,) * 4
    if isinstance(padding, (list, tuple)) and len(padding) == 4 and all(
            isinstance(p, int) and not isinstance(p, bool) for p in padding):
        return tuple(padding)
    raise TableError(f"nn.ZeroPad2d padding {padding!r}: need an int or [left, right, top, bottom]")


def zero_pad_module(padding):
    return nn.ZeroPad2d(_zero_pad_amounts(padding))


def zero_pad(net, weights, prefix: str, x, padding):
    """TensorRT's padding layer: zeros before and after H and W (pooling's own padding would not be zeros)."""
    left, right, top, bottom = _zero_pad_amounts(padding)
    return layers.named(net.add_padding_nd(x, (top, left), (bottom, right)), prefix)


def conv_transpose_module(c1: int, c2: int, kernel_size=1, stride=1, padding=0, *rest):
    _conv_transpose_checks(kernel_size, stride, padding, rest)
    return nn.ConvTranspose2d(c1, c2, kernel_size, stride, padding)


def _conv_transpose_checks(kernel_size, stride, padding, rest):
    _single_int(kernel_size, "nn.ConvTranspose2d kernel_size")
    _single_int(stride, "nn.ConvTranspose2d stride")
    if padding != 0 or rest:
        raise TableError(f"nn.ConvTranspose2d padding {padding!r}, further args {list(rest)!r}: only padding 0 with "
                         f"no output_padding, groups or bias change is supported")


def conv_transpose(net, weights, prefix: str, x, c1: int, c2: int, kernel_size=1, stride=1, padding=0, *rest):
    """Keys `<prefix>.weight` (c1, c2, k, k) and `<prefix>.bias`, as nn.ConvTranspose2d's own."""
    _conv_transpose_checks(kernel_size, stride, padding, rest)
    return layers.conv_transpose2d(net, weights, prefix, x, c2, kernel_size, stride, bias=True)


register(Block("nn.MaxPool2d", max_pool_module, max_pool, resolve=same),
         Block("nn.ZeroPad2d", zero_pad_module, zero_pad, resolve=same),
         Block("nn.ConvTranspose2d", conv_transpose_module, conv_transpose, resolve=scaled))
