"""Configuration from YOLOv5 v7.0 weights through the walker's solver: shapes (.pt) and flat value counts (.wts),
official and custom multiples, anchors from the weights, tensorrtx's extra keys, and the refusals naming the row and
the key. The weights' shapes come from the independent references of tests/reference_yolov5.py."""
import argparse

import numpy as np
import pytest
import torch

from reference_yolov5 import ANCHORS_P5, ANCHORS_P6, STRIDES_P5, STRIDES_P6, VARIANTS, YoloV5
from wts.weight_map import WeightMap
from zoo.yolo.model import YoloModel
from zoo.yolo.registry import TableError

ALL_VARIANTS = [v + p for p in ("", "6") for v in VARIANTS]


def fake_weights(nc=80, gd=0.33, gw=0.5, p6=False, anchors=None, flat=False, tensorrtx=False) -> dict:
    """State-dict-like arrays of the reference module's shapes without allocating them, and real anchors (grid
    units, as YOLOv5 saves them)."""
    anchors = anchors or (ANCHORS_P6 if p6 else ANCHORS_P5)
    strides = STRIDES_P6 if p6 else STRIDES_P5
    with torch.device("meta"):
        state = YoloV5(nc, gd, gw, p6, anchors).state_dict()
    head = f"model.{33 if p6 else 24}"
    out = {k: np.broadcast_to(np.float32(0), (int(np.prod(v.shape)),) if flat else tuple(v.shape))
           for k, v in state.items() if k != f"{head}.anchors"}
    grid = np.asarray(anchors, np.float32) / np.asarray(strides, np.float32).reshape(-1, 1, 1)
    out[f"{head}.anchors"] = grid.reshape(-1) if flat else grid
    if tensorrtx:
        out[f"{head}.anchor_grid"] = np.asarray(anchors, np.float32).reshape(-1)
        out[f"{head}.strides"] = np.asarray(strides, np.float32)
    return out


def config_of(tensors, source="w"):
    return YoloModel("yolov5")._config(WeightMap(tensors, source), argparse.Namespace(decode="plugin"))


@pytest.mark.parametrize("variant", ALL_VARIANTS)
@pytest.mark.parametrize("flat", [False, True], ids=["shapes", "counts"])
def test_round_trip_official_variants(variant, flat):
    gd, gw = VARIANTS[variant.rstrip("6")]
    p6 = variant.endswith("6")
    config = config_of(fake_weights(80, gd, gw, p6, flat=flat))
    assert config.variant == f"yolov5{variant}" and config.num_classes == 80
    assert config.strides == ((8, 16, 32, 64) if p6 else (8, 16, 32))
    assert config.table["anchors"] == [[v for pair in level for v in pair] for level in (ANCHORS_P6 if p6 else
                                                                                         ANCHORS_P5)]


@pytest.mark.parametrize("gd,gw,p6,nc", [(0.5, 0.3, False, 3), (0.25, 0.125, False, 1), (0.67, 0.2, True, 5),
                                         (1.0, 0.55, False, 2)])
def test_round_trip_custom_multiples(gd, gw, p6, nc):
    for flat in (False, True):
        config = config_of(fake_weights(nc, gd, gw, p6, flat=flat))
        assert config.num_classes == nc and config.variant == "yolov5-custom" + ("6" if p6 else "")
        with torch.device("meta"):
            want = {k: tuple(v.shape) for k, v in YoloV5(nc, gd, gw, p6).state_dict().items()}
            got = {k: tuple(v.shape) for k, v in config.module().state_dict().items()}
        assert got == want  # the solved multiples reproduce every channel count and repeat


def test_custom_anchors_and_tensorrtx_extras():
    anchors = (((12, 14), (20, 30), (40, 25)), ((35, 60), (70, 50), (60, 110)), ((120, 95), (160, 200), (380, 330)))
    config = config_of(fake_weights(4, anchors=anchors, flat=True, tensorrtx=True))
    assert config.table["anchors"] == [[float(v) for pair in level for v in pair] for level in anchors]
    assert config.num_classes == 4


def test_refusals_name_the_row_and_the_key():
    good = fake_weights()
    with pytest.raises(TableError, match=r"^x.pt: closest table yolov5v7 at scale s: row 8 \(C3\): "
                                         r"model.8.m.0.cv2.conv.weight \[256, 256, 3, 3\] is missing"):
        config_of({k: v for k, v in good.items() if k != "model.8.m.0.cv2.conv.weight"}, "x.pt")
    with pytest.raises(TableError, match=r"row 17 \(C3\): model.17.cv3.conv.weight has shape \[1, 2, 3, 4\], the "
                                         r"table expects \[128, 128, 1, 1\]"):
        config_of({**good, "model.17.cv3.conv.weight": np.zeros((1, 2, 3, 4), np.float32)}, "x.pt")
    with pytest.raises(TableError, match="no row: extra.weight is not in the table"):
        config_of({**good, "extra.weight": np.zeros(3, np.float32)}, "x.pt")
    with pytest.raises(TableError, match="x.pt: no table of yolov5v7.* has the head these weights hold"):
        config_of({"conv1.weight": np.zeros(3)}, "x.pt")
