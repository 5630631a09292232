"""The typed configuration of a YOLO network, and how it is found: the table (a pickled checkpoint's own `yaml`, a
user's `--model-yaml`, or the official table whose shapes at some scale match the weights), the head's facts read
from the weights (classes, keypoints, masks, anchors), and the flags (input size, decode, SPPF's activation).

Shapes are compared on the meta device (no memory), every key of the weights against every key of the table's
module: a disagreement names the row, the block and the key.
"""
from __future__ import annotations

import copy
from dataclasses import asdict, dataclass, field
from typing import Mapping, Sequence

import numpy as np
import torch

from zoo.engine.folding import match_reparameterized
from zoo.yolo.activation import default_activation
from zoo.yolo.registry import Options, TableError, has, lookup
from zoo.yolo.walker import (Layer, YoloNet, build_module, head_strides, is_yolov5, official_table, resolve,
                             table_names, using)
from zoo.yolo.walker import _rows as walker_rows

TASK_OF_HEAD = {"Detect": "detect", "Segment": "segment", "Pose": "pose", "OBB": "obb", "Classify": "classify",
                "v10Detect": "detect", "Segment26": "segment", "Pose26": "pose", "OBB26": "obb",
                "SemanticSegment": "semantic", "Depth": "depth"}
HEADS = ("auto", "one2one", "one2many")
IGNORED = ("num_batches_tracked", ".anchor_grid", ".strides")   # counters; tensorrtx's extra YOLOv5 buffers
ACTIVATION_OF = {"SiLU": "silu", "ReLU": "relu", "Sigmoid": "sigmoid", "Tanh": "tanh", "Identity": None}


@dataclass
class YoloConfig:
    """Everything the walker, the task part and the engine header need about one YOLO network."""
    table: dict                              # the layer table as data (yaml types only)
    table_name: str                          # an official table's name, or where the table came from
    scale: str | None
    task: str
    input_size: tuple[int, int] = (640, 640)
    decode: str = "plugin"
    sppf_act: bool = True
    class_names: tuple[str, ...] | None = None
    strides: tuple[int, ...] = ()
    head_branch: str = "auto"                # the branch an end-to-end head runs (Options.head)
    max_det: int = 300                       # rows of the end-to-end output

    # --- what the table says
    @property
    def layers(self) -> list[Layer]:
        return resolve(self.table, self.scale)

    @property
    def num_classes(self) -> int:
        return int(self.table.get("nc", 80))

    @property
    def head(self) -> Layer:
        return self.layers[-1]

    @property
    def head_index(self) -> int:
        return len(self.table.get("backbone") or []) + len(self.table.get("head") or []) - 1

    @property
    def output_name(self) -> str:
        return f"model.{self.head_index}"

    @property
    def yolov5(self) -> bool:
        return is_yolov5(self.table)

    @property
    def kpt_shape(self) -> tuple[int, int] | None:
        return tuple(self.head.args[1]) if self.task == "pose" else None

    @property
    def num_masks(self) -> int:
        return int(self.head.args[2 if self.yolov5 else 1]) if self.task == "segment" else 0

    @property
    def variant(self) -> str:
        name = self.table_name
        if self.scale and name.startswith(("yolov8", "yolo11", "yolov5v7", "yolo26", "yolo12")):
            stem, _, suffix = name.partition("-")
            stem = "yolov5" if stem == "yolov5v7" else stem
            p6 = suffix == "p6"
            scale = "-custom" if self.scale == "custom" else self.scale
            return f"{stem}{scale}{'6' if p6 else ''}" + ("" if p6 or not suffix else f"-{suffix}")
        return name

    @property
    def end2end(self) -> bool:
        """The network gives the end-to-end rows (B, k, 6 + extra): a one-to-one branch that the head runs."""
        if self.task == "classify":
            return False
        present = self.head.block.name == "v10Detect" or bool(self.table.get("end2end"))
        return present and self.head_branch != "one2many"

    @property
    def options(self) -> Options:
        return Options(activation=default_activation(self.table, self.table_name), sppf_act=self.sppf_act,
                       decode=self.decode, strides=self.strides, head=self.head_branch, max_det=self.max_det)

    def module(self):
        return build_module(self.layers, self.options)

    def check_input_size(self, height: int, width: int) -> None:
        if self.task == "classify":
            if min(height, width) < 32:
                raise TableError(f"input size {height}x{width}: a classifier input needs at least 32 pixels a side")
            return
        stride = max(self.strides)
        if self.task == "semantic":  # its head stops at P4, its encoder does not
            from zoo.yolo.blocks.dense import input_stride
            stride = input_stride(self.layers, self.options)
        if height % stride or width % stride:
            raise TableError(f"input size {height}x{width} must be positive multiples of {stride} (the largest "
                             "stride)")

    # --- the engine header
    def to_dict(self) -> dict:
        values = asdict(self)
        values.update(input_size=list(self.input_size), strides=list(self.strides),
                      class_names=list(self.class_names) if self.class_names else None,
                      variant=self.variant, num_classes=self.num_classes, num_masks=self.num_masks,
                      kpt_shape=list(self.kpt_shape) if self.kpt_shape else None, end2end=self.end2end)
        return values

    @classmethod
    def from_dict(cls, values: Mapping) -> "YoloConfig":
        if "table" not in values:
            raise TableError("the engine's header has no layer table (built before the YOLO walker): rebuild it")
        names = values.get("class_names")
        return cls(table=values["table"], table_name=values["table_name"], scale=values.get("scale"),
                   task=values["task"], input_size=tuple(values["input_size"]), decode=values.get("decode", "plugin"),
                   sppf_act=bool(values.get("sppf_act", True)), class_names=tuple(names) if names else None,
                   strides=tuple(values.get("strides") or ()), head_branch=values.get("head_branch", "auto"),
                   max_det=int(values.get("max_det", 300)))


# ------------------------------------------------------------------------------------------------ from weights


def _size(array) -> int:
    return int(np.asarray(array).size)


def _count(arrays: Mapping, key: str) -> int | None:
    return _size(arrays[key]) if key in arrays else None


def _conv_out(arrays: Mapping, prefix: str) -> int | None:
    """Output channels of a Conv block at `prefix` (its BatchNorm, or the folded conv's bias)."""
    for key in (f"{prefix}.bn.running_mean", f"{prefix}.conv.bias", f"{prefix}.bn.bias"):
        if key in arrays:
            return _size(arrays[key])
    return None


def head_facts(table: dict, arrays: Mapping, kpt_flag=None, meta_kpt=None) -> dict | None:
    """The table with the head's facts from the weights (classes, masks, keypoints, anchors); None when the weights
    have no such head at the table's last row."""
    table = copy.deepcopy(table)
    rows = table["head"] if table.get("head") else table["backbone"]
    last = rows[-1]
    p = f"model.{len(table.get('backbone') or []) + len(table.get('head') or []) - 1}"
    name, args = last[2], last[3]
    if name in ("SemanticSegment", "Depth"):
        from zoo.yolo.blocks.dense import head_facts as dense_head_facts
        return dense_head_facts(name, args, table, arrays, p)
    if name == "Classify":
        nc = _count(arrays, f"{p}.linear.bias")
        if nc is None:
            return None
        table["nc"] = nc
        args[0] = "nc"
        return table
    if is_yolov5(table):
        first = _count(arrays, f"{p}.m.0.bias")
        anchors = arrays.get(f"{p}.anchors")
        if first is None or anchors is None or name not in ("Detect", "Segment"):
            return None
        nl = len(rows[-1][0]) if isinstance(rows[-1][0], list) else 1
        na = _size(anchors) // (2 * nl)
        nm = _conv_out(arrays, f"{p}.proto.cv3") or 0
        if (name == "Segment") != bool(nm):
            return None
        if na < 1 or first % na:
            raise TableError(f"{p}.m.0.bias has {first} values, not a multiple of {na} anchors")
        table["nc"] = first // na - 5 - nm
        table["anchors_grid"] = np.asarray(anchors, np.float32).reshape(nl, na, 2).tolist()
        if name == "Segment":
            args[2] = nm
        return table if table["nc"] >= 1 else None
    one2many, one2one = f"{p}.cv3.0.2.bias" in arrays, f"{p}.one2one_cv3.0.2.bias" in arrays
    branch = "" if one2many else "one2one_"
    nc = _count(arrays, f"{p}.{branch}cv3.0.2.bias")
    if nc is None:
        return None
    table["nc"] = nc
    table["reg_max"] = (_count(arrays, f"{p}.{branch}cv2.0.2.bias") or 64) // 4
    if one2one != bool(name == "v10Detect" or table.get("end2end")) or not one2many:
        table["end2end"] = one2one          # the branches the weights hold decide (a fused file has one)
    if not one2many:
        table["one2many"] = False
    if name in ("Segment26", "Pose26"):     # training's parts: absent from a fused file
        table["training_parts"] = any(k.startswith((f"{p}.proto.semseg.", f"{p}.flow_model.")) for k in arrays)
    form = {"Segment26": "Segment", "Pose26": "Pose", "OBB26": "OBB", "v10Detect": "Detect"}.get(name, name)
    extra = _count(arrays, f"{p}.{branch}cv4_kpts.0.bias" if name == "Pose26" else f"{p}.{branch}cv4.0.2.bias")
    if (extra is None) != (form == "Detect"):
        return None
    if form == "Segment":
        if _conv_out(arrays, f"{p}.proto.cv3") is None:
            return None
        args[1] = extra
    elif form == "Pose":
        if kpt_flag is None and meta_kpt is None and extra % 2 and extra % 3:
            return None   # not a keypoint layout (an OBB head's angle): another table's head
        table["kpt_shape"] = list(keypoint_shape(extra, meta_kpt or (table.get("kpt_shape") if meta_kpt else None),
                                                 kpt_flag, p))
        args[1] = "kpt_shape"
    return table


def keypoint_shape(values: int, recorded, flag, where: str) -> tuple[int, int]:
    """(K, D) with K * D = `values`: the checkpoint's kpt_shape, else --kpt-shape, else 17 x 3 or a K x 3 / K x 2
    guess."""
    for origin, shape in (("the checkpoint's kpt_shape", recorded), ("--kpt-shape", flag)):
        if shape is None:
            continue
        shape = tuple(int(v) for v in shape)
        if len(shape) != 2 or shape[0] * shape[1] != values:
            raise TableError(f"{where}: {origin} {list(shape)} does not fit the pose head's {values} keypoint values "
                             "per anchor")
        if recorded is not None and flag is not None and tuple(flag) != tuple(int(v) for v in recorded):
            raise TableError(f"--kpt-shape {list(flag)} contradicts the checkpoint's kpt_shape {list(recorded)}")
        return shape
    for d in (3, 2):
        if values % d == 0:
            return values // d, d
    raise TableError(f"{where}: a pose head with {values} values per anchor is neither K x 2 nor K x 3; give "
                     "--kpt-shape")


def with_anchors(table: dict, scale: str | None, options: Options) -> dict:
    """YOLOv5: the anchors in pixels from the weights' grid-unit `anchors` buffer times the strides."""
    grid = table.pop("anchors_grid", None)
    if grid is None:
        return table
    strides = head_strides(resolve(table, scale), options)
    table["anchors"] = [[float(v) * s for pair in level for v in pair] for level, s in zip(grid, strides)]
    return table


def expected_shapes(layers: list[Layer], options: Options, keys=()) -> dict[str, tuple[int, ...]]:
    """The state_dict shapes of the table's module, with its re-parameterised blocks (RepConv, RepVGGDW) in the
    form `keys` hold them (branches or fused)."""
    with using(options), torch.device("meta"):
        module = match_reparameterized(YoloNet(layers), keys)
    return {k: tuple(v.shape) for k, v in module.state_dict().items() if not k.endswith(IGNORED)}


def problems(expected: Mapping[str, tuple], arrays: Mapping, layers: list[Layer]) -> list[str]:
    """Every key the weights and the table disagree on, as 'row i (Block): key ...'. Folded weights (a conv bias,
    no BatchNorm) are what an ONNX export or a fused model holds, and agree with an unfolded table."""
    def row_of(key: str) -> str:
        index = int(key.split(".")[1]) if key.startswith("model.") and key.split(".")[1].isdigit() else -1
        return layers[index].where if 0 <= index < len(layers) else "no row"

    found = []
    folded = {k[:-len(".conv.bias")] for k in arrays if k.endswith(".conv.bias")}
    for key, shape in expected.items():
        owner, _, leaf = key.rpartition(".bn.")
        if leaf and owner in folded and key not in arrays:
            continue
        if key not in arrays:
            found.append(f"{row_of(key)}: {key} {list(shape)} is missing from the weights")
            continue
        got = np.asarray(arrays[key]).shape
        if got != shape and not (len(got) == 1 and got[0] == int(np.prod(shape))):
            found.append(f"{row_of(key)}: {key} has shape {list(got)}, the table expects {list(shape)}")
    for key in arrays:
        if key.endswith(IGNORED) or key in expected:
            continue
        if key.endswith(".conv.bias") and key[:-len(".conv.bias")] in folded \
                and f"{key[:-len('.conv.bias')]}.conv.weight" in expected:
            continue
        found.append(f"{row_of(key)}: {key} is not in the table")
    return found


MAX_CHANNELS = (float("inf"), 2048, 1280, 1024, 768, 640, 512, 384, 256)


def _simplest(lo: float, hi: float, closed_low: bool = False) -> float | None:
    """The value of (lo, hi] (or [lo, hi]) with the smallest denominator among a few, so 0.375 stays 0.375."""
    for denominator in (4, 8, 16, 20, 32, 50, 64, 100, 1000):
        k = int(lo * denominator)
        for v in (k / denominator, (k + 1) / denominator):
            if (lo <= v if closed_low else lo < v) and v <= hi:
                return v
    return None


def custom_scale(table: dict, arrays: Mapping) -> list | None:
    """[depth, width, max_channels] that reproduce the weights' Conv widths and inner-block counts, for weights of
    a scaling no official scale has; None when none does."""
    rows = walker_rows(table)
    convs = [(i, args[0]) for i, (_, _, name, args) in enumerate(rows)
             if name == "Conv" and args and isinstance(args[0], int)]
    actual = {i: _conv_out(arrays, f"model.{i}") for i, _ in convs}
    if not convs or None in actual.values():
        return None
    width = max_channels = None
    for cap in MAX_CHANNELS:
        lo, hi = 0.0, float("inf")
        for i, c in convs:
            lo, hi = max(lo, (actual[i] - 8) / min(c, cap)), min(hi, actual[i] / min(c, cap))
        width = _simplest(lo, hi) if lo < hi else None
        if width is not None:
            max_channels = cap
            break
    if width is None:
        return None
    lo, hi = 0.0, 4.0
    for i, (_, n, name, _) in enumerate(rows):
        if n > 1 and has(name) and lookup(name, "").repeats:
            count = len({k.split(".")[3] for k in arrays if k.startswith(f"model.{i}.m.")})
            lo = max(lo, (count - 0.5) / n if count > 1 else 0.0)
            hi = min(hi, (count + 0.5) / n if count > 1 else 1.5 / n)
    depth = _simplest(lo, hi, closed_low=True) if lo <= hi else None
    return None if depth is None else [depth, width, max_channels]


def _scales(table: dict, scale: str | None) -> list:
    if scale:
        return [scale]
    return list(table.get("scales") or {}) or [None]


@dataclass
class Match:
    table: dict
    name: str
    scale: str | None
    problems: list = field(default_factory=list)


def solve(arrays: Mapping, tables: Sequence[tuple[str, dict]], options: Options, source: str, kpt_flag=None,
          meta_kpt=None, scale: str | None = None) -> Match:
    """The first (table, scale) whose module has exactly the weights' keys and shapes; else one line naming the row
    and the key where the closest candidate disagrees."""
    best = None
    for name, raw in tables:
        table = head_facts(raw, arrays, kpt_flag, meta_kpt)
        if table is None:
            continue
        for s in _scales(table, scale):
            t = with_anchors(copy.deepcopy(table), s, options)
            layers = resolve(t, s)
            stem = _conv_out(arrays, "model.0")
            if stem is not None and layers[0].out_channels != stem and best is not None:
                continue  # a quick no: the first row's width differs
            found = problems(expected_shapes(layers, options, arrays), arrays, layers)
            if not found:
                return Match(t, name, s)
            if best is None or len(found) < len(best.problems):
                best = Match(t, name, s, found)
    if scale is None:  # a scaling of its own: solved from the Conv widths and the inner-block counts
        for name, raw in tables:
            table = head_facts(raw, arrays, kpt_flag, meta_kpt)
            custom = custom_scale(table, arrays) if table is not None else None
            if custom is None:
                continue
            table["scales"] = {"custom": custom}
            t = with_anchors(table, "custom", options)
            layers = resolve(t, "custom")
            if not problems(expected_shapes(layers, options, arrays), arrays, layers):
                return Match(t, name, "custom")
    if best is None:
        raise TableError(f"{source}: no table of {', '.join(n for n, _ in tables)} has the head these weights hold")
    more = f" (and {len(best.problems) - 1} more)" if len(best.problems) > 1 else ""
    return_scale = f" at scale {best.scale}" if best.scale else ""
    raise TableError(f"{source}: closest table {best.name}{return_scale}: {best.problems[0]}{more}")


def official_tables(names: Sequence[str]) -> list[tuple[str, dict]]:
    return [(n, official_table(n)) for n in names]


def line_tables(line: str) -> list[str]:
    """The official tables a command takes: YOLOv5 v7.0's, RT-DETR's (zoo.rtdetr), or the ultralytics line's."""
    v5 = [n for n in table_names() if n.startswith("yolov5v7")]
    detr = [n for n in table_names() if n.startswith("rtdetr")]
    return v5 if line == "yolov5" else detr if line == "rtdetr" else [n for n in table_names() if n not in v5 + detr]


def recorded_sppf_act(meta: Mapping | None, layers: list[Layer]) -> bool | None:
    """SPPF cv1's activation as a pickled model recorded it (True: an activation, False: none); None when unknown."""
    acts = (meta or {}).get("activations") or {}
    for layer in layers:
        act = acts.get(f"model.{layer.index}.cv1") if layer.block.name == "SPPF" else None
        if act:
            return act.rpartition(".")[2] != "Identity"
    return None
