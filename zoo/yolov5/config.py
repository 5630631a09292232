"""YOLOv5 configuration, inferred from the weights themselves.

Weights come in two forms: a ``.pt`` state_dict with real shapes, or a ``.wts`` file whose arrays are flat (only the
value count is known). ``infer_config`` works from value counts alone, so both forms go through the same code:

- layer 0 conv weight count = c0 * 3 * 6 * 6 gives c0; every stride-2 conv count = c_out * c_in * 9 gives the next
  width; ``width_multiple`` is solved so that ``make_divisible(c_yaml * gw, 8)`` reproduces every one of them;
- ``depth_multiple`` is solved from the number of bottlenecks in each C3 (``model.{i}.m.{j}.*`` keys);
- P6 is the presence of ``model.33.*`` keys; the Detect layer is ``model.24`` (P5) or ``model.33`` (P6);
- anchors come from ``model.{D}.anchors`` (grid units; strides are fixed by the architecture: 8, 16, 32(, 64)),
  cross-checked against tensorrtx's ``anchor_grid`` (pixels) and ``strides`` when present;
- classes come from ``model.{D}.m.0.bias``: count = na * (5 + nc).

``check_weights`` then compares every key against the shapes (or counts) of the reference module built from the
config, and raises ``ConfigError`` naming the key and both shapes.
"""

from __future__ import annotations

import functools
import math
import re
from dataclasses import dataclass
from typing import Mapping, Sequence

import numpy as np

from .model import (ANCHORS_P5, ANCHORS_P6, C3_REPEATS_P5, C3_REPEATS_P6, STRIDES_P5, STRIDES_P6, VARIANTS,
                    YoloV5, parse_variant, scale_depth, scale_width)


class ConfigError(ValueError):
    """Weights that do not fit the YOLOv5 v7.0 architecture, or an inconsistent configuration."""


TASKS = ("detect", "segment", "classify")
TASK_SUFFIX = {"detect": "", "segment": "-seg", "classify": "-cls"}


# Yaml widths of the layers whose conv weight count fixes a width: index -> (yaml c_out, kernel, layer of c_in).
_WIDTH_CHAIN_P5 = {0: (64, 6, None), 1: (128, 3, 0), 3: (256, 3, 1), 5: (512, 3, 3), 7: (1024, 3, 5)}
_WIDTH_CHAIN_P6 = {0: (64, 6, None), 1: (128, 3, 0), 3: (256, 3, 1), 5: (512, 3, 3), 7: (768, 3, 5),
                   9: (1024, 3, 7)}
# Keys that tensorrtx's gen_wts.py adds to the Detect layer (pixel anchors, strides); accepted and cross-checked.
_TENSORRTX_EXTRAS = ("anchor_grid", "strides")


def _anchor_tuple(anchors: Sequence[Sequence[Sequence[float]]]) -> tuple[tuple[tuple[float, float], ...], ...]:
    return tuple(tuple((float(a[0]), float(a[1])) for a in lvl) for lvl in anchors)


@dataclass(frozen=True)
class YoloV5Config:
    """Everything the builder and the reference module need to know about one YOLOv5 detection model."""

    num_classes: int = 80
    depth_multiple: float = 0.33
    width_multiple: float = 0.50
    p6: bool = False
    anchors_px: tuple[tuple[tuple[float, float], ...], ...] | None = None  # (nl, na, 2) pixels; None: default
    class_names: tuple[str, ...] | None = None
    task: str = "detect"              # detect, segment or classify (read from the keys)
    num_masks: int = 32               # segment: mask coefficients per anchor (= prototype masks)
    num_protos: int | None = None     # segment: Proto's hidden width; None: make_divisible(256 * width_multiple)

    def __post_init__(self) -> None:
        if self.anchors_px is None:
            object.__setattr__(self, "anchors_px", ANCHORS_P6 if self.p6 else ANCHORS_P5)
        object.__setattr__(self, "anchors_px", _anchor_tuple(self.anchors_px))
        if self.class_names is not None:
            object.__setattr__(self, "class_names", tuple(str(n) for n in self.class_names))
        if int(self.num_classes) != self.num_classes or self.num_classes < 1:
            raise ConfigError(f"num_classes must be a positive integer, got {self.num_classes!r}")
        if not (self.depth_multiple > 0 and self.width_multiple > 0):
            raise ConfigError(f"depth_multiple and width_multiple must be > 0, got {self.depth_multiple}, "
                              f"{self.width_multiple}")
        nl = len(self.strides)
        if len(self.anchors_px) != nl:
            raise ConfigError(f"a {'P6' if self.p6 else 'P5'} model has {nl} detection levels, but "
                              f"{len(self.anchors_px)} anchor levels were given")
        if len({len(lvl) for lvl in self.anchors_px}) != 1 or not self.anchors_px[0]:
            raise ConfigError(f"every level needs the same (non-zero) number of anchors, got "
                              f"{[len(lvl) for lvl in self.anchors_px]}")
        if self.task not in TASKS:
            raise ConfigError(f"task must be one of {TASKS}, got {self.task!r}")
        if self.task == "classify" and self.p6:
            raise ConfigError("YOLOv5 classification models are built from the P5 backbone; there is no P6 one")
        if self.task == "segment" and self.num_protos is None:
            object.__setattr__(self, "num_protos", scale_width(256, self.width_multiple))
        if self.class_names is not None and len(self.class_names) != self.num_classes:
            raise ConfigError(f"{len(self.class_names)} class names for {self.num_classes} classes")

    # ---- derived
    @property
    def strides(self) -> tuple[int, ...]:
        return STRIDES_P6 if self.p6 else STRIDES_P5

    @property
    def num_levels(self) -> int:
        return len(self.strides)

    @property
    def num_anchors(self) -> int:
        return len(self.anchors_px[0])

    @property
    def num_outputs(self) -> int:
        """Values per prediction: x, y, w, h, obj, nc class scores (and nm mask coefficients for segment)."""
        return self.num_classes + 5 + (self.num_masks if self.task == "segment" else 0)

    @property
    def detect_index(self) -> int:
        """The head's layer index: Detect/Segment (24, or 33 for P6), Classify (9)."""
        if self.task == "classify":
            return 9
        return 33 if self.p6 else 24

    @property
    def max_stride(self) -> int:
        return self.strides[-1]

    @property
    def variant(self) -> str | None:
        """'s', 'n6', ... when the multiples are an official variant's, else None (a custom model)."""
        for name, (gd, gw) in VARIANTS.items():
            if (gd, gw) == (self.depth_multiple, self.width_multiple):
                return name + ("6" if self.p6 else "")
        return None

    @property
    def anchors_grid(self) -> np.ndarray:
        """Anchors in grid units, (nl, na, 2) float32: what ``model.{D}.anchors`` holds."""
        px = np.asarray(self.anchors_px, dtype=np.float32)
        return px / np.asarray(self.strides, dtype=np.float32).reshape(-1, 1, 1)

    def num_predictions(self, height: int, width: int) -> int:
        """Rows of the decoded output for an input of height x width (both multiples of the largest stride)."""
        return sum(self.num_anchors * (height // s) * (width // s) for s in self.strides)

    def check_input_size(self, height: int, width: int) -> None:
        s = self.max_stride
        if height <= 0 or width <= 0 or height % s or width % s:
            raise ConfigError(f"input size {height}x{width} must be positive multiples of {s} (the largest stride of "
                              f"this {'P6' if self.p6 else 'P5'} model)")

    @classmethod
    def from_variant(cls, variant: str, num_classes: int = 80, **kw) -> "YoloV5Config":
        gd, gw, p6 = parse_variant(variant)
        return cls(num_classes=num_classes, depth_multiple=gd, width_multiple=gw, p6=p6, **kw)

    def build_module(self):
        """The reference PyTorch module of this config (untrained)."""
        return _module(self.task, self.num_classes, self.depth_multiple, self.width_multiple, self.p6,
                       self.anchors_px, self.num_masks, self.num_protos)


# ------------------------------------------------------------------------------------------------- expected keys


def _module(task: str, nc: int, gd: float, gw: float, p6: bool, anchors, nm: int, npr: int | None):
    from .tasks import YoloV5Classify, YoloV5Segment
    if task == "classify":
        return YoloV5Classify(nc, gd, gw)
    if task == "segment":
        return YoloV5Segment(nc, gd, gw, p6, anchors, nm, npr)
    return YoloV5(nc, gd, gw, p6, anchors)


@functools.lru_cache(maxsize=32)
def _expected_shapes(task: str, nc: int, gd: float, gw: float, p6: bool, na: int, nm: int, npr: int | None
                     ) -> dict[str, tuple[int, ...]]:
    import torch

    anchors = [[(1.0, 1.0)] * na] * (4 if p6 else 3)  # values do not matter for shapes
    with torch.device("meta"):
        module = _module(task, nc, gd, gw, p6, anchors, nm, npr)
    return {k: tuple(v.shape) for k, v in module.state_dict().items()}


def expected_shapes(config: YoloV5Config) -> dict[str, tuple[int, ...]]:
    """state_dict key -> shape of the reference module for ``config``, in state_dict order (built on 'meta')."""
    return dict(_expected_shapes(config.task, config.num_classes, config.depth_multiple, config.width_multiple,
                                 config.p6, config.num_anchors, config.num_masks, config.num_protos))


def _folded_shapes(config: YoloV5Config, keys: Sequence[str]) -> dict[str, tuple[int, ...]]:
    """expected_shapes of the reference module with the BatchNorms that `keys` fold folded into their convs."""
    import torch

    from zoo.engine.folding import match_folding
    with torch.device("meta"):
        module = match_folding(config.build_module(), keys)
    return {k: tuple(v.shape) for k, v in module.state_dict().items()}


def _count(shape: Sequence[int]) -> int:
    return int(math.prod(shape))


def _fmt(shape: Sequence[int]) -> str:
    return str(tuple(int(s) for s in shape))


def _first(keys: Sequence[str], n: int = 5) -> str:
    return ", ".join(keys[:n]) + (f" and {len(keys) - n} more" if len(keys) > n else "")


def _is_optional(key: str) -> bool:
    # num_batches_tracked is never read; exporters may drop it.
    return key.endswith(".num_batches_tracked")


def _shapes_known(tensors: Mapping[str, np.ndarray]) -> bool:
    """A .wts map holds flat 1-D arrays only; any array of another rank means the shapes are real."""
    return any(np.ndim(v) != 1 for v in tensors.values())


def check_weights(tensors: Mapping[str, np.ndarray], config: YoloV5Config, source_name: str = "weights",
                  shapes_known: bool | None = None) -> None:
    """Raise ConfigError unless ``tensors`` are exactly the weights of ``config``.

    Compares shapes when they are known (``.pt``), value counts otherwise (``.wts``; auto-detected when
    ``shapes_known`` is None). Also checks the anchors against ``config.anchors_px`` and tensorrtx's extras.
    """
    _check_architecture(tensors, source_name)
    if shapes_known is None:
        shapes_known = _shapes_known(tensors)
    expected = expected_shapes(config)
    if any(k.endswith(".conv.bias") for k in tensors):  # folded BatchNorm (an ONNX export, a fused model)
        expected = _folded_shapes(config, list(tensors))
    d = f"model.{config.detect_index}"
    extras = {f"{d}.{name}" for name in _TENSORRTX_EXTRAS}

    # shapes first: the first key whose shape differs says most about what the weights really are
    for key, shape in expected.items():
        if key not in tensors:
            continue
        got = np.asarray(tensors[key])
        if shapes_known:
            if tuple(got.shape) != shape:
                raise ConfigError(f"{source_name}: {key} has shape {_fmt(got.shape)}, expected {_fmt(shape)}")
        elif got.size != _count(shape):
            raise ConfigError(f"{source_name}: {key} has {got.size} values, expected {_count(shape)} "
                              f"(shape {_fmt(shape)})")
    name = f"YOLOv5{config.variant or ' (custom)'}{TASK_SUFFIX[config.task]}"
    missing = [k for k in expected if k not in tensors and not _is_optional(k)]
    if missing:
        raise ConfigError(f"{source_name}: {len(missing)} key(s) of {name} missing: {_first(missing)}")
    unexpected = [k for k in tensors if k not in expected and k not in extras]
    if unexpected:
        raise ConfigError(f"{source_name}: {len(unexpected)} unexpected key(s) for {name}: {_first(unexpected)}")
    if config.task != "classify":
        _check_anchor_values(tensors, config, source_name)


def _check_anchor_values(tensors: Mapping[str, np.ndarray], config: YoloV5Config, source_name: str) -> None:
    d = f"model.{config.detect_index}"
    want_grid = config.anchors_grid
    got = np.asarray(tensors[f"{d}.anchors"], dtype=np.float32).reshape(want_grid.shape)
    if not np.allclose(got, want_grid, rtol=1e-6, atol=0):
        raise ConfigError(f"{source_name}: {d}.anchors (grid units) = {got.reshape(-1).tolist()} do not match the "
                          f"config's anchors {want_grid.reshape(-1).tolist()}")
    if f"{d}.strides" in tensors:
        strides = np.asarray(tensors[f"{d}.strides"], dtype=np.float32).reshape(-1)
        if strides.tolist() != [float(s) for s in config.strides]:
            raise ConfigError(f"{source_name}: {d}.strides = {strides.tolist()}, expected "
                              f"{list(config.strides)} for a {'P6' if config.p6 else 'P5'} model")
    if f"{d}.anchor_grid" in tensors:
        grid_px = np.asarray(tensors[f"{d}.anchor_grid"], dtype=np.float32)
        want_px = np.asarray(config.anchors_px, dtype=np.float32)
        if grid_px.size != want_px.size or not np.allclose(grid_px.reshape(want_px.shape), want_px, rtol=1e-6,
                                                           atol=0):
            raise ConfigError(f"{source_name}: {d}.anchor_grid (pixels) = {grid_px.reshape(-1).tolist()} does not "
                              f"match anchors * strides = {want_px.reshape(-1).tolist()}")


# ------------------------------------------------------------------------------------------------- inference


def _check_architecture(tensors: Mapping[str, np.ndarray], source_name: str) -> None:
    """Refuse weights of other architectures or YOLOv5 versions with a message that says what they are."""
    if "model.0.conv.conv.weight" in tensors:
        raise ConfigError(f"{source_name}: layer 0 is a Focus stem (key 'model.0.conv.conv.weight'): these are "
                          "YOLOv5 v5.0-or-older weights; YOLOv5 v6.0+ (v7.0 architecture) weights are required")
    if "model.22.dfl.conv.weight" in tensors:
        raise ConfigError(f"{source_name}: key 'model.22.dfl.conv.weight' means YOLOv8 weights; use python -m "
                          "zoo.yolov8")
    if "model.2.cv1.conv.weight" in tensors and "model.2.cv3.conv.weight" not in tensors:
        raise ConfigError(f"{source_name}: layer 2 has no 'model.2.cv3' (a C2f/C3k2 block, not YOLOv5's C3): these "
                          "are YOLOv8/YOLO11 weights; use python -m zoo.yolov8 or zoo.yolo11")
    if "model.0.conv.weight" not in tensors:
        sample = ", ".join(list(tensors)[:3]) or "none"
        raise ConfigError(f"{source_name}: not YOLOv5 weights: no key 'model.0.conv.weight' (the 6x6 stem "
                          f"conv of YOLOv5 v6.0+); first keys: {sample}")


def detect_task(tensors: Mapping[str, np.ndarray]) -> str:
    """The task of YOLOv5 weights, from the keys: Classify's linear layer, Segment's Proto, else detection."""
    if "model.9.linear.weight" in tensors:
        return "classify"
    if any(k.startswith(("model.24.proto.", "model.33.proto.")) for k in tensors):
        return "segment"
    return "detect"


def _size(tensors: Mapping[str, np.ndarray], key: str, source_name: str) -> int:
    if key not in tensors:
        raise ConfigError(f"{source_name}: key {key!r} is missing")
    return int(np.asarray(tensors[key]).size)


def _divide(count: int, by: int, key: str, what: str, source_name: str) -> int:
    if by <= 0 or count % by or count == 0:
        raise ConfigError(f"{source_name}: {key} has {count} values, which is not a positive multiple of {by} "
                          f"({what})")
    return count // by


def solve_width_multiple(widths: Mapping[int, int]) -> float:
    """A width_multiple gw with make_divisible(c_yaml * gw, 8) == c for every (c_yaml -> c) in ``widths``.

    Prefers an official variant's value, then the shortest decimal; raises ConfigError when none exists.
    """
    lo = max((c - 8) / cy for cy, c in widths.items())
    hi = min(c / cy for cy, c in widths.items())

    def ok(gw: float) -> bool:
        return gw > 0 and all(scale_width(cy, gw) == c for cy, c in widths.items())

    for _, gw in VARIANTS.values():
        if ok(gw):
            return gw
    for decimals in range(1, 7):
        step = 10 ** -decimals
        for k in range(math.floor(lo / step), math.ceil(hi / step) + 1):
            gw = round(k * step, decimals)
            if ok(gw):
                return gw
    if ok(hi):
        return hi
    shown = ", ".join(f"{cy}->{c}" for cy, c in sorted(widths.items()))
    raise ConfigError(f"no width_multiple reproduces the channel counts (yaml width -> channels: {shown}); the "
                      f"layers do not follow the YOLOv5 v7.0 scaling rule")


def solve_depth_multiple(repeats: Mapping[int, int]) -> float:
    """A depth_multiple gd with max(round(n_yaml * gd), 1) == r for every (n_yaml -> r) in ``repeats``."""

    def ok(gd: float) -> bool:
        return gd > 0 and all(scale_depth(ny, gd) == r for ny, r in repeats.items())

    for gd, _ in VARIANTS.values():
        if ok(gd):
            return gd
    ny_max = max(repeats)
    r = repeats[ny_max]
    lo = 0.0 if r == 1 else (r - 0.5) / ny_max
    hi = (r + 0.5) / ny_max
    for decimals in range(1, 5):
        step = 10 ** -decimals
        for k in range(max(1, math.floor(lo / step)), math.ceil(hi / step) + 1):
            gd = round(k * step, decimals)
            if ok(gd):
                return gd
    shown = ", ".join(f"{ny}->{r}" for ny, r in sorted(repeats.items()))
    raise ConfigError(f"no depth_multiple reproduces the C3 repeat counts (yaml repeats -> bottlenecks: {shown}); "
                      "the layers do not follow the YOLOv5 v7.0 scaling rule")


def _bottleneck_count(tensors: Mapping[str, np.ndarray], layer: int) -> int:
    pat = re.compile(rf"^model\.{layer}\.m\.(\d+)\.")
    idx = {int(m.group(1)) for k in tensors if (m := pat.match(k))}
    return len(idx)


def infer_config(tensors: Mapping[str, np.ndarray], shapes_known: bool | None = None,
                 source_name: str = "weights", class_names: Sequence[str] | None = None,
                 check: bool = True) -> YoloV5Config:
    """Infer the YoloV5Config of a state_dict-like map from value counts alone, then ``check_weights`` it.

    ``shapes_known``: whether arrays carry their real shapes (.pt) or are flat (.wts); auto-detected when None.
    Only value counts are used for inference; the shapes (when known) are verified by ``check_weights``.
    """
    _check_architecture(tensors, source_name)
    task = detect_task(tensors)
    p6 = task != "classify" and any(k.startswith("model.33.") for k in tensors)
    chain = _WIDTH_CHAIN_P6 if p6 else _WIDTH_CHAIN_P5
    repeats_yaml = C3_REPEATS_P6 if p6 else C3_REPEATS_P5
    if task == "classify":  # the backbone's C3 layers only (the model is cut at layer 9)
        repeats_yaml = {i: n for i, n in repeats_yaml.items() if i < 9}
    d = 33 if p6 else 24

    # widths: c_out = count / (c_in * k * k) along the stride-2 conv chain
    channels: dict[int, int] = {}
    for layer, (_, k, src) in chain.items():
        key = f"model.{layer}.conv.weight"
        c_in = 3 if src is None else channels[src]
        channels[layer] = _divide(_size(tensors, key, source_name), c_in * k * k, key,
                                  f"c_out * {c_in} * {k} * {k}", source_name)
    widths = {}
    for layer, (cy, _, _) in chain.items():
        if widths.get(cy, channels[layer]) != channels[layer]:
            raise ConfigError(f"{source_name}: inconsistent widths for yaml width {cy}")
        widths[cy] = channels[layer]
    gw = solve_width_multiple(widths)

    # depth: number of bottlenecks per C3
    found: dict[int, int] = {}
    for layer, ny in repeats_yaml.items():
        n = _bottleneck_count(tensors, layer)
        if n == 0:
            raise ConfigError(f"{source_name}: C3 layer model.{layer} has no bottlenecks (no 'model.{layer}.m.0.*' "
                              "keys)")
        if found.setdefault(ny, n) != n:
            raise ConfigError(f"{source_name}: C3 layers with the same yaml repeat count ({ny}) have different "
                              f"bottleneck counts ({found[ny]} and {n}, at model.{layer})")
    gd = solve_depth_multiple(found)
    if task == "classify":
        bkey = "model.9.linear.bias"
        config = YoloV5Config(num_classes=_size(tensors, bkey, source_name), depth_multiple=gd, width_multiple=gw,
                              class_names=class_names, task=task)
        if check:
            check_weights(tensors, config, source_name, shapes_known)
        return config

    # anchors (grid units) and the number of anchors per level
    nl = len(STRIDES_P6 if p6 else STRIDES_P5)
    strides = np.asarray(STRIDES_P6 if p6 else STRIDES_P5, dtype=np.float32)
    akey, gkey = f"model.{d}.anchors", f"model.{d}.anchor_grid"
    if akey in tensors:
        grid = np.asarray(tensors[akey], dtype=np.float32).reshape(-1)
        na = _divide(grid.size, nl * 2, akey, f"{nl} levels * anchors * 2", source_name)
        anchors_px = grid.reshape(nl, na, 2) * strides.reshape(-1, 1, 1)
    elif gkey in tensors:
        px = np.asarray(tensors[gkey], dtype=np.float32).reshape(-1)
        na = _divide(px.size, nl * 2, gkey, f"{nl} levels * anchors * 2", source_name)
        anchors_px = px.reshape(nl, na, 2)
    else:
        raise ConfigError(f"{source_name}: no anchors: neither {akey!r} nor {gkey!r} is present")

    # segment: Proto's hidden width from cv1 (input: the P3 output), the mask count from cv3
    nm, npr = 0, None
    if task == "segment":
        key = f"model.{d}.proto.cv1.conv.weight"
        p3 = scale_width(256, gw)
        npr = _divide(_size(tensors, key, source_name), p3 * 9, key, f"protos * {p3} * 3 * 3", source_name)
        key = f"model.{d}.proto.cv3.conv.weight"
        nm = _divide(_size(tensors, key, source_name), npr, key, f"masks * {npr}", source_name)

    # classes: Detect conv bias = na * (5 + nc [+ nm])
    bkey = f"model.{d}.m.0.bias"
    no = _divide(_size(tensors, bkey, source_name), na, bkey, f"{na} anchors * (5 + classes + {nm} masks)",
                 source_name)
    if no <= 5 + nm:
        raise ConfigError(f"{source_name}: {bkey} has {na * no} values: {na} anchors * {no} outputs leaves no classes")

    config = YoloV5Config(num_classes=no - 5 - nm, depth_multiple=gd, width_multiple=gw, p6=p6,
                          anchors_px=anchors_px.tolist(), class_names=class_names, task=task,
                          num_masks=nm or 32, num_protos=npr)
    if check:
        check_weights(tensors, config, source_name, shapes_known)
    return config
