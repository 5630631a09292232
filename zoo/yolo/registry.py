"""The block registry of the YOLO walker: every block a layer table may name, keyed by its ultralytics class name.

The contract of a block (one `Block`, registered from one file under zoo/yolo/blocks/, beside its reference module):
- `name`: the class name as a table writes it (`"Conv"`, `"C2f"`, `"nn.Upsample"`).
- `module`: the PyTorch reference, constructed as `module(*args)`; its attribute names are the upstream state_dict
  contract (`cv1.conv.weight`, `m.0.cv2.bn.running_var`), so a checkpoint loads with `load_state_dict(strict=True)`.
- `build(net, weights, prefix, x, *args) -> ITensor (or a list for a head with several outputs)`: the same block on
  an INetworkDefinition, with the SAME `args` as `module`; `x` is one tensor, or a list when the row's `from` is a
  list; every layer is named after its module path under `prefix` (`model.4.m.0.cv1`), and the block's output
  tensor is named `prefix`. It reads weights only through `weights` (the WeightMap) under `prefix`.
- `resolve(row) -> (args, out_channels)`: how a table row becomes constructor args, as the upstream table walker
  does it: `scaled` (c1 = input channels, c2 = the yaml channels scaled by width and capped by max_channels, the
  rest of the yaml args after them), `same` (no channel change, yaml args as they are), `concat`, or a head's own.
- `repeats`: True when the block takes the row's scaled repeat count as its third argument (C2f, C3, C3k2 ...; at
  `repeats_at` for HGBlock);
  otherwise a row with n > 1 becomes nn.Sequential of n blocks (keys `model.<i>.<j>....`).
- `head`: True for the last row's blocks that decode outputs (Detect and its task variants, Classify); the walker
  gives them `Options.strides` and returns their outputs as the network's.

Options of a whole table that blocks read while they are constructed or built (`options()`): the default
activation, SPPF's cv1 activation (a trap of released weights), the decode form of heads, the heads' strides.
"""
from __future__ import annotations

import contextlib
import contextvars
import importlib
import math
import pkgutil
import threading
from dataclasses import dataclass, field, replace
from typing import Any, Callable

from zoo.engine.errors import UserError


class TableError(UserError, ValueError):
    """A layer table the walker cannot build, or weights it does not describe: one line naming the row and what is
    wrong (a user's error: the commands print it and exit 2)."""


def make_divisible(x: float, divisor: int = 8) -> int:
    """Smallest multiple of `divisor` that is >= x (the channel rounding of every YOLO table)."""
    return math.ceil(x / divisor) * divisor


@dataclass(frozen=True)
class Options:
    """Table-wide choices that are not table rows. `activation`: what a Conv's `act=True` means (the table's
    `activation` key; SiLU when absent). `sppf_act`: SPPF cv1 with the default activation (released weights) or
    none (models built by ultralytics 8.4). `decode`: "plugin" or "layers" for the heads' box decode. `strides`:
    the heads' input strides, set by the walker. `head`: which branch a two-branch (end-to-end) head runs;
    `max_det`: the rows its top-k keeps."""
    activation: str = "silu"
    sppf_act: bool = True
    decode: str = "plugin"
    strides: tuple[int, ...] = ()
    attention: str = "plugin"   # RT-DETR's deformable attention: the plugin op or plain layers
    head: str = "auto"          # end-to-end heads: "one2one", "one2many" or "auto" (one-to-one when present)
    max_det: int = 300          # rows of the end-to-end output


_OPTIONS: contextvars.ContextVar[Options] = contextvars.ContextVar("yolo_options", default=Options())


def options() -> Options:
    return _OPTIONS.get()


@contextlib.contextmanager
def using(opts: Options, **changes):
    token = _OPTIONS.set(replace(opts, **changes))
    try:
        yield _OPTIONS.get()
    finally:
        _OPTIONS.reset(token)


@dataclass
class Row:
    """One table row as the walker resolves it: `index` (the `model.<i>` number), `args` (the yaml args with the
    table's names such as `nc` replaced by their values), `inputs` (channels of each `from` source), `repeats`
    (scaled), and the table's scaling."""
    index: int
    name: str
    args: list
    inputs: list[int]
    repeats: int
    keep: int | None = None                 # YOLOv5 leaves a count equal to its head's outputs unscaled
    scale: str | None = None
    width: float = 1.0
    max_channels: float = float("inf")
    previous: tuple[str, ...] = ()          # block names of the earlier rows (a head's form may depend on them)
    table: dict = field(default_factory=dict)

    def channels(self, c: int) -> int:
        """Upstream's rule: make_divisible(min(c, max_channels) * width, 8)."""
        return c if c == self.keep else make_divisible(min(c, self.max_channels) * self.width, 8)

    def where(self) -> str:
        return f"row {self.index} ({self.name})"


def scaled(row: Row) -> tuple[list, int]:
    """c1 = the input's channels, c2 = the scaled first yaml arg, then the other yaml args."""
    if not row.args or not isinstance(row.args[0], int):
        raise TableError(f"{row.where()}: the first argument must be an output channel count, got {row.args!r}")
    c2 = row.channels(row.args[0])
    return [row.inputs[0], c2, *row.args[1:]], c2


def unscaled(row: Row) -> tuple[list, int]:
    """c1 = the input's channels, c2 = the first yaml arg as it is (a class count), then the other yaml args."""
    return [row.inputs[0], *row.args], row.args[0]


def same(row: Row) -> tuple[list, int]:
    """No channel change; the yaml args as they are."""
    return list(row.args), row.inputs[0]


def concat(row: Row) -> tuple[list, int]:
    return list(row.args), sum(row.inputs)


@dataclass(frozen=True)
class Block:
    name: str
    module: Callable[..., Any]
    build: Callable[..., Any]
    resolve: Callable[[Row], tuple[list, int]] = scaled
    repeats: bool = False
    head: bool = False
    repeats_at: int = 2     # where the repeat count goes among the args (HGBlock takes it after k, at 4)


REGISTRY: dict[str, Block] = {}
_STATE = "unloaded"            # -> "loading" -> "loaded"
_LOADING = threading.RLock()   # other threads wait for the loading one; its own nested lookups pass through


def register(*blocks: Block) -> None:
    for block in blocks:
        if block.name in REGISTRY and REGISTRY[block.name] is not block:
            raise ValueError(f"block {block.name!r} registered twice")
        REGISTRY[block.name] = block


def _load_blocks() -> None:
    """Import every file of zoo/yolo/blocks: each registers its blocks (adding a block is adding a file). Thread
    safe: serve's request threads look blocks up at once, and none may see the registry half filled."""
    global _STATE
    if _STATE == "loaded":
        return
    with _LOADING:
        if _STATE != "unloaded":  # loaded meanwhile, or this thread is loading (a block module looking one up)
            return
        _STATE = "loading"
        try:
            from . import blocks
            for info in pkgutil.iter_modules(blocks.__path__):
                importlib.import_module(f"{blocks.__name__}.{info.name}")
        except BaseException:
            _STATE = "unloaded"
            raise
        _STATE = "loaded"


def has(name: str) -> bool:
    _load_blocks()
    return name in REGISTRY


def lookup(name: str, where: str) -> Block:
    _load_blocks()
    if name not in REGISTRY:
        raise TableError(f"{where}: unknown block {name!r} (known: {', '.join(sorted(REGISTRY))})")
    return REGISTRY[name]
