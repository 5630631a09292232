"""The YOLO walker: a layer table (rows `[from, repeats, block, args]` plus `nc`, `scales` or the multiples, and
the head's options) becomes the PyTorch reference module and the network definition, through the block registry.

Upstream's table rules (ultralytics `parse_model`, and YOLOv5 v7.0's), as the walker applies them:
- scale: `scales[scale] = [depth, width, max_channels]`, or `depth_multiple` / `width_multiple` (YOLOv5);
- repeats: n > 1 becomes max(round(n * depth), 1); blocks that take n get it as their third argument, others are
  repeated as nn.Sequential;
- channels: the block's resolve rule (zoo.yolo.registry), `make_divisible(min(c, max_channels) * width, 8)`;
- `from`: -1 is the previous row, a list gathers several rows (the current one first where it says -1);
- a string argument is a table name (`nc`, `kpt_shape`, `anchors`) or a literal (`None`, `True`, `2`) read with
  ast.literal_eval; nothing is evaluated;
- names: row i is `model.<i>`, so state_dict keys are `model.<i>.<block attributes>`.
A table with a top-level `anchors` key is YOLOv5 v7.0's dialect: its rows name `Detect`/`Segment` for the anchored
heads, registered as `yolov5.Detect`/`yolov5.Segment`; and a count equal to the head's outputs is not scaled.
"""
from __future__ import annotations

import ast
import copy
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import torch
from torch import nn

import layers
from zoo.yolo.registry import Block, Options, Row, TableError, has, lookup, using

TABLES = Path(__file__).parent / "tables"
TABLE_NAMES = ("nc", "kpt_shape", "anchors", "reg_max")


def table_names() -> list[str]:
    return sorted(p.stem for p in TABLES.glob("*.yaml"))


def official_table(name: str) -> dict:
    path = TABLES / f"{name}.yaml"
    if not path.is_file():
        raise TableError(f"no official table {name!r} (known: {', '.join(table_names())})")
    return read_table(path)


def read_table(path) -> dict:
    import yaml
    try:
        with open(path, encoding="utf-8") as f:
            table = yaml.safe_load(f.read(1 << 20))
    except (OSError, UnicodeDecodeError, yaml.YAMLError) as e:
        raise TableError(f"{path}: not a readable YAML table ({str(e).splitlines()[0]})") from None
    if not isinstance(table, dict):
        raise TableError(f"{path}: a layer table is a mapping with backbone and head rows")
    return table


def is_yolov5(table: dict) -> bool:
    """YOLOv5 v7.0's dialect: its tables have anchors (and the project's v5 classify table says so)."""
    return "anchors" in table or table.get("dialect") == "yolov5"


@dataclass(frozen=True)
class Layer:
    """One resolved row: `model.<index>`, its `source` (-1, a row index or a list), the block and its args."""
    index: int
    source: int | list
    repeats: int
    block: Block
    args: list
    out_channels: int

    @property
    def where(self) -> str:
        return f"row {self.index} ({self.block.name})"


def scaling(table: dict, scale: str | None = None) -> tuple[str | None, float, float, float]:
    """(scale, depth, width, max_channels) of a table at `scale` (the table's own `scale`, else its first)."""
    scales = table.get("scales")
    if scales:
        scale = scale or table.get("scale") or next(iter(scales))
        if scale not in scales:
            raise TableError(f"table has no scale {scale!r} (scales: {', '.join(scales)})")
        depth, width, max_channels = scales[scale]
        return scale, float(depth), float(width), float(max_channels)
    return None, float(table.get("depth_multiple", 1.0)), float(table.get("width_multiple", 1.0)), float("inf")


def _argument(value, table: dict):
    if isinstance(value, str):
        if value in TABLE_NAMES and value in table:
            return copy.deepcopy(table[value])
        try:
            return ast.literal_eval(value)
        except (ValueError, SyntaxError):
            return value
    return value


def _rows(table: dict) -> list:
    rows = list(table.get("backbone") or []) + list(table.get("head") or [])
    if not rows:
        raise TableError("the table has no backbone or head rows")
    for i, row in enumerate(rows):
        if not (isinstance(row, (list, tuple)) and len(row) == 4 and isinstance(row[2], str)
                and isinstance(row[3], list)):
            raise TableError(f"row {i}: a row is [from, repeats, block, args], got {row!r}")
    return rows


def resolve(table: dict, scale: str | None = None, in_channels: int = 3) -> list[Layer]:
    """Every row of `table` with its block, constructor args and output channels."""
    scale, depth, width, max_channels = scaling(table, scale)
    nc = int(table.get("nc", 80))
    v5 = is_yolov5(table)
    if v5:  # YOLOv5 keeps a count equal to the head's outputs unscaled
        anchors = table.get("anchors") or [[0, 0] * 3]
        keep = (len(anchors[0]) // 2 if isinstance(anchors, list) else int(anchors)) * (nc + 5)
    else:
        keep = None
    channels: list[int] = []
    resolved: list[Layer] = []
    for i, (source, n, name, args) in enumerate(_rows(table)):
        where = f"row {i} ({name})"
        block = lookup(f"yolov5.{name}" if v5 and _has_v5_form(name) else name, where)
        sources = source if isinstance(source, list) else [source]
        try:
            inputs = [channels[s] if s >= 0 else (channels[s] if channels else in_channels) for s in sources]
        except (IndexError, TypeError):
            raise TableError(f"{where}: from {source!r} names a row that does not come before it") from None
        if not isinstance(n, int) or n < 1:
            raise TableError(f"{where}: repeats must be a positive integer, got {n!r}")
        n = max(round(n * depth), 1) if n > 1 else n
        row = Row(i, name, [_argument(a, table) for a in args], inputs, n, keep, scale, width, max_channels,
                  tuple(layer.block.name for layer in resolved), table)
        block_args, c2 = block.resolve(row)
        if block.repeats:
            block_args.insert(block.repeats_at, n)
            n = 1
        resolved.append(Layer(i, source, n, block, block_args, c2))
        channels.append(c2)
    return resolved


def _has_v5_form(name: str) -> bool:
    return has(f"yolov5.{name}")


# ------------------------------------------------------------------------------------------------ the module


class YoloNet(nn.Module):
    """The reference module of a table: `model` holds row i at `model.<i>`, each with `.i` and `.f` (its from)."""

    def __init__(self, resolved: list[Layer]):
        super().__init__()
        modules = []
        for layer in resolved:
            try:
                m = layer.block.module(*layer.args) if layer.repeats == 1 else nn.Sequential(
                    *(layer.block.module(*layer.args) for _ in range(layer.repeats)))
            except TableError:
                raise
            except (TypeError, ValueError) as e:
                raise TableError(f"{layer.where}: arguments {layer.args!r} do not fit: {e}") from None
            m.i, m.f = layer.index, layer.source
            modules.append(m)
        self.model = nn.Sequential(*modules)

    def forward(self, x: torch.Tensor):
        outputs = []
        for m in self.model:
            if m.f != -1:
                x = outputs[m.f] if isinstance(m.f, int) else [x if j == -1 else outputs[j] for j in m.f]
            x = m(x)
            outputs.append(x)
        return x


class StopProbe(Exception):
    """Raised by a `shape_probe` hook that has seen what it needed: the pass ends there."""


def shape_probe(resolved: list[Layer], options: Options, size: int, watch: Callable[[YoloNet], object]) -> None:
    """One forward pass of the table's network on a size x size input, for shapes only. `watch(module)` registers
    the hooks that record them (a hook may raise StopProbe). The module is built on the meta device (nothing
    allocated or initialised), BatchNorm is dropped (it changes no shape), and the pass runs on the CPU with
    uninitialised weights: a forward pass on the meta device loads torch's compiler stack (its meta kernels are
    Python), which cost every command about 1.5 s at start."""
    with using(options), torch.device("meta"):
        module = YoloNet(resolved).eval()
    for parent in list(module.modules()):
        for name, child in parent.named_children():
            if isinstance(child, nn.BatchNorm2d):
                setattr(parent, name, nn.Identity())
    module = module._apply(lambda t: torch.empty(t.shape, dtype=t.dtype))  # to_empty, without meta kernels
    watch(module)
    try:
        with torch.no_grad():
            module(torch.zeros(1, 3, size, size))
    except StopProbe:
        pass


_STRIDES: dict[str, tuple[int, ...]] = {}


def head_strides(resolved: list[Layer], options: Options, size: int = 256) -> tuple[int, ...]:
    """The strides of the last row's inputs, from a forward pass at size x size (what upstream does at 256) with
    uninitialised weights; () when the last row takes one input (Classify). Remembered per layout
    (sources, blocks, repeats and the arguments after the channels), which is all they depend on."""
    last = resolved[-1]
    if not isinstance(last.source, list):
        return ()
    key = repr([(layer.source, layer.block.name, layer.repeats,
                 () if layer.block.head else layer.args[3:] if layer.block.repeats else layer.args[2:])
                for layer in resolved])
    if key not in _STRIDES:
        _STRIDES[key] = _forward_strides(resolved, options, size)
    return _STRIDES[key]


def _forward_strides(resolved: list[Layer], options: Options, size: int) -> tuple[int, ...]:
    shapes = []

    def capture(_module, inputs):
        shapes.extend(t.shape[2] for t in inputs[0])
        raise StopProbe

    shape_probe(resolved, options, size, lambda module: module.model[-1].register_forward_pre_hook(capture))
    return tuple(size // h for h in shapes)


def build_module(resolved: list[Layer], options: Options) -> YoloNet:
    if not options.strides:
        options = Options(**{**options.__dict__, "strides": head_strides(resolved, options)})
    with using(options):
        return YoloNet(resolved).eval()


# ------------------------------------------------------------------------------------------------ the network


def define(net, weights, resolved: list[Layer], options: Options, x) -> list:
    """The network of the table from input x (B, 3, H, W): every row's block under `model.<i>`; returns the last
    row's outputs (a list)."""
    outputs = []
    with using(options):
        for layer in resolved:
            if layer.source != -1:
                x = (outputs[layer.source] if isinstance(layer.source, int)
                     else [x if j == -1 else outputs[j] for j in layer.source])
            prefix = f"model.{layer.index}"
            if layer.repeats == 1:
                x = layer.block.build(net, weights, prefix, x, *layer.args)
            else:
                for j in range(layer.repeats):
                    x = layer.block.build(net, weights, f"{prefix}.{j}", x, *layer.args)
                layers.rename(x, prefix)
            outputs.append(x)
    return list(x) if isinstance(x, (list, tuple)) else [x]
