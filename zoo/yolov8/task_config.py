"""Configuration of YOLOv8 / YOLO11 models of every task, read from the weights (and a checkpoint's own record).

The task comes from the keys: `proto` under the head means segment; `cv4` means pose, or oriented boxes when its
last conv has a single output (the angle); a `linear` layer at model.9 (YOLOv8) or model.10 (YOLO11) without a
Detect head means classify. The backbone, neck and Detect part are read by zoo.yolov8.config.infer_config on the
weights without the task's extra keys; then the task's own numbers:
- segment: masks = cv4's output count, prototype channels = proto.cv1's output count;
- pose: K*D = cv4's output count; the keypoint shape (K, D) from the checkpoint's yaml `kpt_shape`, else
  --kpt-shape, else 17x3 for 51 values, x3 for other multiples of 3 and x2 for even counts (D is 2 or 3);
- classify: widths and depths of the backbone alone, classes from the linear layer.
Every key is then checked against the task's reference module (shapes or value counts; none missing or left over).
"""
from __future__ import annotations

from dataclasses import dataclass, fields
from typing import Mapping, Sequence

import numpy as np

from .config import (C3K2_LAYERS, DETECT_INDEX, REPEAT_LAYERS, WIDTH_LAYERS, ConfigError, YoloV8Config,
                     _names, _official_scale, _out_channels, _solve_width, check_weights, infer_config)
from .model import REG_MAX
from .tasks import TASKS, classify_index, task_module
from zoo.yolov5.config import solve_depth_multiple

SUFFIX = {"detect": "", "segment": "-seg", "pose": "-pose", "obb": "-obb", "classify": "-cls"}


@dataclass(frozen=True)
class TaskConfig(YoloV8Config):
    task: str = "detect"
    num_masks: int = 32                       # segment
    num_protos: int | None = None             # segment: Proto's width; None: 256 scaled as a channel count
    kpt_shape: tuple[int, int] | None = None  # pose: (keypoints, values per keypoint)

    def __post_init__(self) -> None:
        if self.task not in TASKS:
            raise ConfigError(f"task must be one of {TASKS}, got {self.task!r}")
        if self.task == "pose":
            if self.kpt_shape is None or len(self.kpt_shape) != 2 or self.kpt_shape[1] not in (2, 3) \
                    or self.kpt_shape[0] < 1:
                raise ConfigError(f"pose needs a keypoint shape (K, 2 or 3), got {self.kpt_shape}")
            object.__setattr__(self, "kpt_shape", (int(self.kpt_shape[0]), int(self.kpt_shape[1])))

    @property
    def variant(self) -> str:
        return f"{self.family}{self.scale or '-custom'}{SUFFIX[self.task]}"

    @property
    def head_index(self) -> int:
        return classify_index(self.family) if self.task == "classify" else self.detect_index

    def build_module(self, head=None):
        return task_module(self.architecture(), self.task, self.num_masks, self.num_protos,
                           self.kpt_shape or (17, 3))

    def to_dict(self) -> dict:
        values = super().to_dict()
        values["kpt_shape"] = list(self.kpt_shape) if self.kpt_shape else None
        return values

    @classmethod
    def from_dict(cls, values: Mapping) -> "TaskConfig":
        values = dict(values)
        if values.get("kpt_shape") is not None:
            values["kpt_shape"] = tuple(values["kpt_shape"])
        return super().from_dict(values)


def detect_task(tensors: Mapping[str, np.ndarray], source: str) -> tuple[str, int]:
    """(task, head layer index) from the keys."""
    keys = tensors.keys()
    if "model.2.cv3.conv.weight" in keys or "model.0.conv.weight" in keys and np.asarray(
            tensors["model.0.conv.weight"]).shape[-1:] == (6,):
        raise ConfigError(f"{source}: a C3 block at model.2 (or a 6x6 stem) means YOLOv5 weights; use python -m "
                          "zoo.yolov5")
    heads = [d for d in DETECT_INDEX.values() if f"model.{d}.cv2.0.2.weight" in keys]
    if not heads:
        for family in ("yolov8", "yolo11"):
            if f"model.{classify_index(family)}.linear.weight" in keys:
                return "classify", classify_index(family)
        return "detect", 0  # infer_config names what is missing
    d = heads[0]
    if any(k.startswith(f"model.{d}.proto.") for k in keys):
        return "segment", d
    if f"model.{d}.cv4.0.2.bias" in keys:
        return ("obb" if np.asarray(tensors[f"model.{d}.cv4.0.2.bias"]).size == 1 else "pose"), d
    return "detect", d


def keypoint_shape(values: int, meta: Mapping | None, flag: Sequence[int] | None, source: str) -> tuple[int, int]:
    """(K, D) with K * D = `values`: the checkpoint's yaml kpt_shape, else the flag, else a guess (see above)."""
    yaml = (meta or {}).get("yaml") if isinstance((meta or {}).get("yaml"), dict) else {}
    recorded = yaml.get("kpt_shape")
    for origin, shape in (("the checkpoint's kpt_shape", recorded), ("--kpt-shape", flag)):
        if shape is None:
            continue
        shape = tuple(int(v) for v in shape)
        if len(shape) != 2 or shape[0] * shape[1] != values:
            raise ConfigError(f"{source}: {origin} {list(shape)} does not fit the pose head's {values} keypoint "
                              "values per anchor")
        if recorded is not None and flag is not None and tuple(flag) != tuple(int(v) for v in recorded):
            raise ConfigError(f"{source}: --kpt-shape {list(flag)} contradicts the checkpoint's kpt_shape "
                              f"{list(recorded)}")
        return shape
    if values == 51:
        return 17, 3
    if values % 3 == 0:
        return values // 3, 3
    if values % 2 == 0:
        return values // 2, 2
    raise ConfigError(f"{source}: a pose head with {values} values per anchor is neither K x 2 nor K x 3; "
                      "give --kpt-shape")


def infer_task_config(tensors: Mapping[str, np.ndarray], source: str = "weights", meta: Mapping | None = None,
                      sppf_act: bool | None = None, kpt_shape: Sequence[int] | None = None,
                      check: bool = True) -> TaskConfig:
    task, d = detect_task(tensors, source)
    if task == "classify":
        config = _classify_config(tensors, source, meta)
    else:
        extras = (f"model.{d}.proto.", f"model.{d}.cv4.")
        base = infer_config({k: v for k, v in tensors.items() if not k.startswith(extras)}, source, meta,
                            sppf_act, check=False)
        values = {f.name: getattr(base, f.name) for f in fields(YoloV8Config)}
        if task == "segment":
            values.update(num_masks=int(np.asarray(tensors[f"model.{d}.cv4.0.2.bias"]).size),
                          num_protos=_out_channels(tensors, f"model.{d}.proto.cv1", source))
        elif task == "pose":
            values["kpt_shape"] = keypoint_shape(int(np.asarray(tensors[f"model.{d}.cv4.0.2.bias"]).size), meta,
                                                 kpt_shape, source)
        config = TaskConfig(task=task, **values)
    if check:
        check_weights(tensors, config, source)
    return config


def _classify_config(tensors: Mapping[str, np.ndarray], source: str, meta: Mapping | None) -> TaskConfig:
    """The backbone's scaling (layers 0-8, and YOLO11's C2PSA at 9) and the classes of the linear layer."""
    family = "yolov8" if "model.9.linear.weight" in tensors else "yolo11"
    widths = {cy: _out_channels(tensors, f"model.{i}", source) for i, cy in WIDTH_LAYERS.items()}
    layers = {i: n for i, n in REPEAT_LAYERS[family].items() if i < 9}
    if family == "yolo11":
        layers[9] = 2  # C2PSA
    repeats: dict[int, int] = {}
    for layer, ny in layers.items():
        n = len({k.split(".")[3] for k in tensors if k.startswith(f"model.{layer}.m.")})
        if n == 0:
            raise ConfigError(f"{source}: layer model.{layer} has no inner blocks (no 'model.{layer}.m.0.*' keys)")
        if layer != 9 and repeats.setdefault(ny, n) != n:
            raise ConfigError(f"{source}: layers with the same yaml repeat count ({ny}) have {repeats[ny]} and {n} "
                              f"inner blocks (at model.{layer}): not a {family} classifier")
    psa = len({k.split(".")[3] for k in tensors if k.startswith("model.9.m.")}) if family == "yolo11" else None
    official = _official_scale(family, widths, repeats)
    if official:
        depth, width, max_channels = official
    else:
        width, max_channels = _solve_width(widths, family, source)
        depth = solve_depth_multiple(repeats)
    head = classify_index(family)
    num_classes = int(np.asarray(tensors[f"model.{head}.linear.bias"]).size) \
        if f"model.{head}.linear.bias" in tensors else 0
    if num_classes < 1:
        raise ConfigError(f"{source}: key model.{head}.linear.bias is missing")
    c3k = tuple((i, f"model.{i}.m.0.cv3.conv.weight" in tensors) for i in C3K2_LAYERS) if family == "yolo11" else None
    names = _names(meta)
    return TaskConfig(family=family, depth=depth, width=width, max_channels=max_channels, num_classes=num_classes,
                      reg_max=REG_MAX, depthwise_head=family == "yolo11", c3k=c3k, c2psa_repeats=psa,
                      class_names=names if names and len(names) == num_classes else None, task="classify")
