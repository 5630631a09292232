"""YOLOv8 / YOLO11 configuration read from the weights, and from a pickled checkpoint's own record where it has one.

From the keys and value counts alone (so `.wts`, state_dicts, folded ONNX weights and checkpoints all work):
- family: the Detect layer is `model.22` (YOLOv8: C2f) or `model.23` (YOLO11: C3k2, C2PSA);
- widths: the output channels of the stride-2 convs (layers 0, 1, 3, 5, 7: yaml 64 .. 1024) from their BatchNorm
  (or folded bias) counts; width and max_channels are solved so that make_divisible(min(c, max) * width, 8)
  reproduces each; an official scale of the family is preferred;
- depth: the number of inner blocks of each C2f / C3k2 (and C2PSA) layer, solved the same way;
- YOLO11's C3k2 inner form per layer (C3k has a `cv3`), the class-branch form (a depthwise first conv in YOLO11),
  classes (`cv3.0.2.bias`) and reg_max (`cv2.0.2.bias` / 4).
From a pickled ultralytics model (Checkpoint.meta): its `yaml` (scale, nc), its `stride`, and each Conv's activation
type, which is the only way to know SPPF's cv1 activation (SiLU in released weights, none from ultralytics 8.4).
"""
from __future__ import annotations

import functools
import math
import re
from dataclasses import asdict, dataclass, fields
from typing import Mapping, Sequence

import numpy as np
import torch

from zoo.engine.folding import match_folding
from zoo.yolov5.config import solve_depth_multiple, solve_width_multiple

from .model import FAMILIES, REG_MAX, SCALES, STRIDES, Architecture, Scaling, YoloV8


class ConfigError(ValueError):
    """Weights that are not YOLOv8 / YOLO11 detection weights, or that contradict a flag or themselves."""


DETECT_INDEX = {"yolov8": 22, "yolo11": 23}
# yaml channels of the stride-2 convs, and yaml repeats of the CSP layers (C2f / C3k2, and YOLO11's C2PSA)
WIDTH_LAYERS = {0: 64, 1: 128, 3: 256, 5: 512, 7: 1024}
REPEAT_LAYERS = {"yolov8": {2: 3, 4: 6, 6: 6, 8: 3, 12: 3, 15: 3, 18: 3, 21: 3},
                 "yolo11": {2: 2, 4: 2, 6: 2, 8: 2, 10: 2, 13: 2, 16: 2, 19: 2, 22: 2}}
C3K2_LAYERS = (2, 4, 6, 8, 13, 16, 19, 22)
SPPF_INDEX = 9
# Convs built without activation (act=False): everything else of these models is SiLU
NO_ACTIVATION = re.compile(r"\.attn\.(qkv|proj|pe)$|\.ffn\.1$")


@dataclass(frozen=True)
class YoloV8Config(Architecture):
    """The Architecture (what fixes the shapes) plus what the weights say about using them."""

    class_names: tuple[str, ...] | None = None

    @property
    def scale(self) -> str | None:
        """'n', 's', ... when depth, width and max_channels are an official scale's, else None (custom)."""
        for name, values in SCALES[self.family].items():
            if values == (self.depth, self.width, self.max_channels):
                return name
        return None

    @property
    def variant(self) -> str:
        return f"{self.family}{self.scale}" if self.scale else f"{self.family}-custom"

    @property
    def strides(self) -> tuple[int, ...]:
        return STRIDES

    @property
    def max_stride(self) -> int:
        return STRIDES[-1]

    def architecture(self) -> Architecture:
        return Architecture(**{f.name: getattr(self, f.name) for f in fields(Architecture)})

    def build_module(self, head=None) -> YoloV8:
        return YoloV8(self.architecture()) if head is None else YoloV8(self.architecture(), head)

    def check_input_size(self, height: int, width: int) -> None:
        s = self.max_stride
        if height <= 0 or width <= 0 or height % s or width % s:
            raise ConfigError(f"input size {height}x{width} must be positive multiples of {s} (the largest stride "
                              f"of {self.variant})")

    def to_dict(self) -> dict:
        values = asdict(self)
        values["c3k"] = [list(p) for p in self.c3k] if self.c3k is not None else None
        return values

    @classmethod
    def from_dict(cls, values: Mapping) -> "YoloV8Config":
        known = {f.name for f in fields(cls)}
        kw = {k: v for k, v in values.items() if k in known}
        if kw.get("c3k") is not None:
            kw["c3k"] = tuple((int(i), bool(b)) for i, b in kw["c3k"])
        if kw.get("class_names") is not None:
            kw["class_names"] = tuple(kw["class_names"])
        return cls(**kw)


# ------------------------------------------------------------------------------------------------- detection


def _count(tensors: Mapping[str, np.ndarray], key: str, source: str) -> int:
    if key not in tensors:
        raise ConfigError(f"{source}: key {key!r} is missing")
    return int(np.asarray(tensors[key]).size)


def detect_family(tensors: Mapping[str, np.ndarray], source: str) -> str:
    """'yolov8' or 'yolo11' from where the Detect head is; a one-line error for anything else."""
    keys = tensors.keys()
    if "model.24.anchors" in keys or "model.33.anchors" in keys:
        raise ConfigError(f"{source}: anchors at model.24/model.33 mean YOLOv5 weights; use python -m zoo.yolov5")
    found = [f for f, d in DETECT_INDEX.items() if f"model.{d}.cv2.0.2.weight" in keys]
    if len(found) != 1:
        sample = ", ".join(list(keys)[:3]) or "none"
        raise ConfigError(f"{source}: not YOLOv8 / YOLO11 detection weights: no Detect head at model.22.cv2 (YOLOv8) "
                          f"or model.23.cv2 (YOLO11); first keys: {sample}")
    family = found[0]
    d = DETECT_INDEX[family]
    for extra, task in (("proto", "segmentation (-seg)"), ("cv4", "pose (-pose) or oriented-box (-obb)")):
        if any(k.startswith(f"model.{d}.{extra}.") for k in keys):
            raise ConfigError(f"{source}: key model.{d}.{extra}.* means a {family} {task} model; this command "
                              "builds the detection model")
    return family


def _out_channels(tensors: Mapping[str, np.ndarray], prefix: str, source: str) -> int:
    """A Conv block's output channels: its BatchNorm's size, or its folded bias's."""
    for key in (f"{prefix}.bn.weight", f"{prefix}.conv.bias"):
        if key in tensors:
            return int(np.asarray(tensors[key]).size)
    raise ConfigError(f"{source}: key {prefix}.bn.weight (or a folded {prefix}.conv.bias) is missing")


def _inner_blocks(tensors: Mapping[str, np.ndarray], layer: int) -> int:
    pattern = re.compile(rf"^model\.{layer}\.m\.(\d+)\.")
    return len({int(m.group(1)) for k in tensors if (m := pattern.match(k))})


def _solve_max_channels(width: float, widths: Mapping[int, int], family: str, source: str) -> int:
    """The max_channels that, with `width`, reproduces the widths of the yaml-512 and -1024 layers."""
    candidates = [1024] + sorted({s[2] for s in SCALES[family].values()} - {1024}, reverse=True)
    candidates += sorted({f(c / width) for c in widths.values() for f in (math.floor, round)}, reverse=True)
    for mc in candidates:
        if all(Scaling(1.0, width, mc).channels(cy) == c for cy, c in widths.items()):
            return mc
    shown = ", ".join(f"{cy}->{c}" for cy, c in sorted(widths.items()))
    raise ConfigError(f"{source}: no width / max_channels reproduces the channel counts (yaml -> channels: {shown})")


def _solve_width(widths: Mapping[int, int], family: str, source: str) -> tuple[float, int]:
    """(width, max_channels): the width from the layers below max_channels (all of them first, then fewer), and the
    max_channels that caps the others."""
    last_error = None
    for below in (1024, 512, 256):
        try:
            width = solve_width_multiple({cy: c for cy, c in widths.items() if cy <= below})
            return width, _solve_max_channels(width, widths, family, source)
        except ValueError as e:
            last_error = e
    raise ConfigError(f"{source}: {last_error}")


def _official_scale(family: str, widths: Mapping[int, int], repeats: Mapping[int, int]) -> tuple | None:
    for depth, width, mc in SCALES[family].values():
        scaling = Scaling(depth, width, mc)
        if (all(scaling.channels(cy) == c for cy, c in widths.items())
                and all(scaling.repeats(ny) == r for ny, r in repeats.items())):
            return depth, width, mc
    return None


def infer_config(tensors: Mapping[str, np.ndarray], source: str = "weights", meta: Mapping | None = None,
                 sppf_act: bool | None = None, check: bool = True) -> YoloV8Config:
    """The configuration of `tensors` (state_dict keys; shaped or flat arrays). `meta`: what a pickled ultralytics
    model recorded (Checkpoint.meta). `sppf_act`: the --sppf-act choice for weights that cannot tell (None:
    SiLU); a checkpoint that records it wins only when they agree, otherwise it is an error."""
    family = detect_family(tensors, source)
    d = DETECT_INDEX[family]
    widths = {cy: _out_channels(tensors, f"model.{i}", source) for i, cy in WIDTH_LAYERS.items()}
    repeats: dict[int, int] = {}
    for layer, ny in REPEAT_LAYERS[family].items():
        n = _inner_blocks(tensors, layer)
        if n == 0:
            raise ConfigError(f"{source}: layer model.{layer} has no inner blocks (no 'model.{layer}.m.0.*' keys)")
        if repeats.setdefault(ny, n) != n:
            raise ConfigError(f"{source}: layers with the same yaml repeat count ({ny}) have {repeats[ny]} and {n} "
                              f"inner blocks (at model.{layer}): not a {family} layout")
    official = _official_scale(family, widths, repeats)
    if official:
        depth, width, max_channels = official
    else:
        width, max_channels = _solve_width(widths, family, source)
        depth = solve_depth_multiple(repeats)
    num_classes = _count(tensors, f"model.{d}.cv3.0.2.bias", source)
    box = _count(tensors, f"model.{d}.cv2.0.2.bias", source)
    if box % 4:
        raise ConfigError(f"{source}: model.{d}.cv2.0.2.bias has {box} values, not 4 * reg_max")
    c3k = tuple((i, f"model.{i}.m.0.cv3.conv.weight" in tensors) for i in C3K2_LAYERS) if family == "yolo11" else None
    recorded = _sppf_activation(meta, source)
    if recorded is not None and sppf_act is not None and recorded != sppf_act:
        raise ConfigError(f"{source}: --sppf-act {'silu' if sppf_act else 'none'} contradicts the checkpoint, whose "
                          f"model.{SPPF_INDEX}.cv1 has {'SiLU' if recorded else 'no activation'}")
    names = _names(meta)
    config = YoloV8Config(family=family, depth=depth, width=width, max_channels=max_channels,
                          num_classes=num_classes, reg_max=box // 4,
                          sppf_act=recorded if recorded is not None else (True if sppf_act is None else sppf_act),
                          depthwise_head=f"model.{d}.cv3.0.0.0.conv.weight" in tensors, c3k=c3k,
                          c2psa_repeats=repeats.get(2) if family == "yolo11" else None,
                          class_names=names if names and len(names) == num_classes else None)
    _check_meta(config, meta, source)
    if check:
        check_weights(tensors, config, source)
    return config


# ------------------------------------------------------------------------------------------------- checkpoint record


def _sppf_activation(meta: Mapping | None, source: str) -> bool | None:
    """SPPF cv1's activation as the pickled model recorded it (True: SiLU, False: none), None when unknown.
    Every other Conv must have its usual activation: an unsupported one is an error, never silently SiLU."""
    acts = (meta or {}).get("activations") or {}
    recorded = None
    for path, act in acts.items():
        kind = act.rpartition(".")[2]
        if path == f"model.{SPPF_INDEX}.cv1":
            if kind not in ("SiLU", "Identity"):
                raise ConfigError(f"{source}: model.{SPPF_INDEX}.cv1 has activation {act}; only SiLU or none")
            recorded = kind == "SiLU"
        elif kind != ("Identity" if NO_ACTIVATION.search(path) else "SiLU") and re.match(r"^model\.\d+\.", path):
            raise ConfigError(f"{source}: {path} has activation {act}, which this builder does not support (it "
                              f"builds the official SiLU models)")
    return recorded


def _names(meta: Mapping | None) -> tuple[str, ...] | None:
    names = (meta or {}).get("names")
    if isinstance(names, dict):
        return tuple(str(names[k]) for k in sorted(names))
    return tuple(str(n) for n in names) if names else None


def _check_meta(config: YoloV8Config, meta: Mapping | None, source: str) -> None:
    """The pickled model's own record (yaml, stride) must agree with what the weights say."""
    meta = meta or {}
    yaml = meta.get("yaml") if isinstance(meta.get("yaml"), dict) else {}
    if "nc" in yaml and int(yaml["nc"]) != config.num_classes:
        raise ConfigError(f"{source}: the checkpoint's yaml says nc={yaml['nc']}, its head has "
                          f"{config.num_classes} classes")
    scale = yaml.get("scale")
    if isinstance(scale, str) and config.scale and scale != config.scale:
        raise ConfigError(f"{source}: the checkpoint's yaml says scale {scale!r}, its weights are {config.variant}")
    stride = meta.get("stride")
    if stride is not None and [int(s) for s in np.asarray(stride).reshape(-1)] != list(config.strides):
        raise ConfigError(f"{source}: the checkpoint's strides {np.asarray(stride).reshape(-1).tolist()} are not "
                          f"{list(config.strides)} (only P3-P5 models are supported)")


# ------------------------------------------------------------------------------------------------- key check


def expected_shapes(config: YoloV8Config, keys: Sequence[str] = ()) -> dict[str, tuple[int, ...]]:
    """state_dict key -> shape of the reference module (folded where `keys` are folded), built on 'meta'."""
    if not any(k.endswith(".conv.bias") for k in keys):
        return dict(_unfolded_shapes(config))
    with torch.device("meta"):
        module = match_folding(config.build_module(), keys)
    return {k: tuple(v.shape) for k, v in module.state_dict().items()}


@functools.lru_cache(maxsize=16)
def _unfolded_shapes(config: YoloV8Config) -> tuple[tuple[str, tuple[int, ...]], ...]:
    with torch.device("meta"):  # the config's own module: a subclass (another task's head) builds its own
        module = config.build_module()
    return tuple((k, tuple(v.shape)) for k, v in module.state_dict().items())


def check_weights(tensors: Mapping[str, np.ndarray], config: YoloV8Config, source: str = "weights") -> None:
    """ConfigError unless `tensors` are exactly the weights of `config`: shapes (or value counts, for flat .wts
    arrays), no key missing, none left over."""
    expected = expected_shapes(config, list(tensors))
    shaped = any(np.ndim(v) != 1 for v in tensors.values())
    for key, shape in expected.items():
        if key not in tensors:
            continue
        got = np.asarray(tensors[key])
        if (tuple(got.shape) != shape) if shaped else (got.size != math.prod(shape)):
            what = f"shape {tuple(got.shape)}" if shaped else f"{got.size} values"
            raise ConfigError(f"{source}: {key} has {what}, {config.variant} expects {shape}")
    missing = [k for k in expected if k not in tensors and not k.endswith(".num_batches_tracked")]
    if missing:
        raise ConfigError(f"{source}: {len(missing)} key(s) of {config.variant} missing: {', '.join(missing[:5])}")
    unexpected = [k for k in tensors if k not in expected]
    if unexpected:
        raise ConfigError(f"{source}: {len(unexpected)} unexpected key(s) for {config.variant}: "
                          f"{', '.join(unexpected[:5])}")


def config_for(family: str, scale: str, num_classes: int = 80, **kw) -> YoloV8Config:
    """The configuration of an official scale (random weights)."""
    if family not in FAMILIES:
        raise ConfigError(f"unknown family {family!r}; known: {FAMILIES}")
    depth, width, mc = SCALES[family][scale]
    return YoloV8Config(family=family, depth=depth, width=width, max_channels=mc, num_classes=num_classes,
                        reg_max=REG_MAX, depthwise_head=family == "yolo11", **kw)

