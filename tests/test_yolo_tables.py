"""Every registered layer table (zoo/yolo/tables, all families: a table added later is tested with no edit), built by
the walker at its smallest scale from seeded random weights, written to `.wts` and read back, then validated layer by
layer on the reference backend against the walker's reference module: every tensor a module outputs, matched by
name, at FP32 1e-4 (relative to max(1, max|ref|)), every weight used, every module with weights before the head
compared (the head by its outputs).

Sizes are kept small so the whole file runs in seconds per table: the input is a letterboxed 64 px synthetic
scene (2 x 2 cells at stride 32, one at stride 64), a table with one scale (YOLOv10's) is built at no more than
n's multiples, and a table without `scales` (the v3 and YOLOv9 tables, trained at width 1.0 only) is built at width
1/8 with its depth as written, which changes channel counts, not structure; tables that narrow to the same network
are walked once.

The reference modules are also held to the parameter counts ultralytics 8.4.190 prints in its own tables' comments
(cfg/models/v8, scale n, 80 classes), an independent check of the blocks' shapes."""
from __future__ import annotations

import argparse
import copy
from dataclasses import replace

import pytest
import torch

import wts.format
from layerwise import covered_by_ancestor, walk_table
from wts.weight_map import WeightMap
from zoo.engine.model import state_dict_arrays
from zoo.yolo import walker
from zoo.yolo.activation import default_activation
from zoo.yolo.model import YoloModel
from zoo.yolo.random import randomize
from zoo.yolo.registry import Options, make_divisible
from zoo.vision.letterbox import preprocess
from zoo.vision.synthetic import draw_scene

SMALL_WIDTH = 0.125      # for tables without scales
TOLERANCE = 1e-4
CALIBRATION_SIZE = 128  # BatchNorm statistics of the random weights (zoo.yolo.random) from images this size

# ultralytics 8.4.190 cfg/models/v8/<table>.yaml, the comment of scale n: "... N parameters" (nc 80)
UPSTREAM_PARAMETERS_N = {"yolov8-ghost": 1_865_316, "yolov8-ghost-p2": 2_033_944, "yolov8-ghost-p6": 2_901_100,
                         "yolov8-p6": 4_984_352}


# args after c2 that upstream takes as written (not scaled by width): YOLOv9's hidden channel counts
UNSCALED_HIDDEN = {"RepNCSPELAN4": (1, 2), "ELAN1": (1, 2), "SPPELAN": (1,)}


def smallest(table: dict) -> tuple[dict, str | None]:
    """The table at its smallest scale: the first of `scales` (upstream lists n first; a table with one scale,
    as YOLOv10's b to x, at most n's depth 1/3 and width 1/4); else width 1/8, applied to YOLOv9's hidden channel
    counts too (upstream writes them unscaled, and its tables have width 1.0 only)."""
    table = copy.deepcopy(table)
    if table.get("scales"):
        scale = next(iter(table["scales"]))
        if len(table["scales"]) == 1:  # YOLOv10's one-scale tables, b to x included, at n's multiples or less
            depth, width, max_channels = table["scales"][scale]
            table["scales"] = {scale: [min(depth, 0.33), min(width, 0.25), max_channels]}
        return table, scale
    table["width_multiple"] = SMALL_WIDTH
    for row in table.get("backbone", []) + table.get("head", []):
        for i in UNSCALED_HIDDEN.get(row[2], ()):
            row[3][i] = make_divisible(row[3][i] * SMALL_WIDTH, 8)
    return table, None


def _distinct(names: list[str]) -> list[str]:
    """Tables whose narrowed forms (below) differ: yolov10b and yolov10l differ only in depth, which narrowing
    makes the same, and one network need not be tested twice."""
    seen, kept = set(), []
    for name in names:
        table, _ = smallest(walker.official_table(name))
        key = repr({k: v for k, v in table.items() if k != "scales"} | {"scales": list(table.get("scales", {})
                                                                                       .values())})
        if key not in seen:
            seen.add(key)
            kept.append(name)
    return kept


TABLES = _distinct([n for n in walker.table_names() if not n.startswith("rtdetr")])  # RT-DETR: tests/test_rtdetr.py


def table_options(table: dict, name: str) -> Options:
    return Options(activation=default_activation(table, name))


def scene(size: int) -> torch.Tensor:
    """A letterboxed synthetic scene: an input like the calibration images of the random weights. Uniform noise
    drives them far outside it (activations of 20-60 sigma, attention logits spread over 100: a hard argmax), where
    PyTorch's own FP32 is 1e-4 away from float64 and a comparison at 1e-4 measures rounding luck."""
    return torch.from_numpy(preprocess([draw_scene(200, 160, 1)], size)[0])


@pytest.mark.parametrize("name", TABLES)
def test_table_validates_layer_by_layer_through_wts(name, tmp_path):
    table, scale = smallest(walker.official_table(name))
    resolved = walker.resolve(table, scale)
    options = table_options(table, name)
    options = replace(options, strides=walker.head_strides(resolved, options))
    module = walker.build_module(resolved, options)
    size = max([64, *options.strides])
    randomize(module, seed=0, calib_size=CALIBRATION_SIZE)

    path = tmp_path / f"{name}.wts"
    wts.format.save(path, module.state_dict())
    weights = WeightMap(wts.format.load(path), str(path))

    compared, expected = walk_table(module, weights, resolved, options, scene(size), TOLERANCE, name)
    assert weights.unused() == [], f"{name}: weights no layer read"
    head = f"model.{resolved[-1].index}."  # the head is held by its outputs (YOLOv5's splits its output convs)
    weighted = {n for n, sub in module.named_modules()
                if n in expected and not n.startswith(head) and any(True for _ in sub.parameters(recurse=False))}
    missing = sorted(n for n in weighted - set(compared) if not covered_by_ancestor(n, compared, expected))
    assert not missing, f"{name}: modules with weights that no network tensor is named after: {missing[:10]}"


@pytest.mark.parametrize("name", sorted(UPSTREAM_PARAMETERS_N))
def test_parameter_counts_are_upstreams(name):
    table = walker.official_table(name)
    resolved = walker.resolve(table, "n")
    with torch.device("meta"):
        module = walker.build_module(resolved, table_options(table, name))
    assert sum(p.numel() for p in module.parameters()) == UPSTREAM_PARAMETERS_N[name]


def test_a_tables_activation_reaches_the_commands():
    """yolov6's `activation: torch.nn.ReLU()`: the configuration solved from its weights (no yaml) builds ReLU
    convolutions, SPPF's cv1 and the head's included; a table without the key keeps SiLU."""
    table = walker.official_table("yolov6")
    module = walker.build_module(walker.resolve(table, "n"), table_options(table, "yolov6"))
    flat = WeightMap({k: v.reshape(-1) for k, v in state_dict_arrays(module).items()}, "yolov6n.wts")
    config = YoloModel("yolov8")._config(flat, argparse.Namespace(decode="layers"))
    assert (config.table_name, config.options.activation) == ("yolov6", "relu")
    built = config.module()
    acts = {type(m.act).__name__ for m in built.modules() if hasattr(m, "act") and isinstance(m.act, torch.nn.Module)}
    assert acts == {"ReLU"}, acts
    assert type(built.model[9].cv1.act).__name__ == "ReLU" and type(built.model[-1].cv2[0][0].act).__name__ == "ReLU"
    assert default_activation(walker.official_table("yolov8-ghost")) == "silu"
