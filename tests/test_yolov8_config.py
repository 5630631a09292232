"""Configuration from YOLOv8 / YOLO11 weights through the walker's solver: every official scale, custom scalings,
head forms, checkpoint records (SPPF activation, yaml, names, strides) and the one-line refusals naming the row and
the key. The weights' shapes come from the independent references of tests/reference_yolov8.py."""
import argparse

import numpy as np
import pytest
import torch

from reference_yolov8 import SCALES, Architecture, YoloV8, architecture
from wts.weight_map import WeightMap
from zoo.yolo.model import YoloModel
from zoo.yolo.registry import TableError


def shapes_only(arch: Architecture, flat: bool = False) -> dict:
    """state_dict-like arrays of the right shapes without allocating them (zero-stride views)."""
    with torch.device("meta"):
        state = YoloV8(arch).state_dict()
    return {k: np.broadcast_to(np.float32(0), (int(np.prod(v.shape)),) if flat else tuple(v.shape))
            for k, v in state.items()}


def config_of(tensors, source="w", meta=None, **flags):
    weights = WeightMap(tensors, source)
    weights.meta = meta
    return YoloModel("yolov8")._config(weights, argparse.Namespace(decode="plugin", **flags))


@pytest.mark.parametrize("family,scale", [(f, s) for f in SCALES for s in SCALES[f]])
def test_every_official_scale_is_recognised(family, scale):
    config = config_of(shapes_only(architecture(family, scale, num_classes=7)))
    assert config.variant == f"{family}{scale}" and config.num_classes == 7 and config.table.get("reg_max") == 16
    assert config.head.args[2] == (family == "yolov8")          # legacy (plain) class branch on v8 only


@pytest.mark.parametrize("arch", [
    Architecture("yolov8", depth=0.5, width=0.375, max_channels=640, num_classes=3),
    Architecture("yolo11", depth=1.0, width=0.75, max_channels=768, num_classes=1, reg_max=8,
                 c3k=((2, False), (4, False), (6, True), (8, True), (13, False), (16, False), (19, False),
                      (22, True))),
])
def test_custom_scalings_reproduce_every_shape(arch):
    tensors = shapes_only(arch, flat=True)  # from value counts alone, as a .wts gives them
    config = config_of(tensors, "custom.wts")
    with torch.device("meta"):
        want = {k: tuple(v.shape) for k, v in YoloV8(arch).state_dict().items()}
        got = {k: tuple(v.shape) for k, v in config.module().state_dict().items()}
    assert got == want and config.scale == "custom"
    assert config.table["reg_max"] == arch.reg_max and config.num_classes == arch.num_classes


def test_checkpoint_record_decides_the_sppf_activation():
    tensors = shapes_only(architecture("yolo11", "n"))
    meta = {"activations": {"model.9.cv1": "torch.nn.modules.linear.Identity",
                            "model.9.cv2": "torch.nn.modules.activation.SiLU"},
            "yaml": {"nc": 80, "scale": "n"}, "names": {i: f"c{i}" for i in range(80)}, "stride": [8.0, 16.0, 32.0]}
    config = config_of(tensors, "y.pt", meta)
    assert config.sppf_act is False and config.class_names[:2] == ("c0", "c1")
    assert config_of(tensors, "y.wts").sppf_act is True                          # nothing recorded: SiLU
    assert config_of(tensors, "y.wts", sppf_act="none").sppf_act is False       # the flag
    with pytest.raises(TableError, match="--sppf-act silu contradicts the checkpoint"):
        config_of(tensors, "y.pt", meta, sppf_act="silu")


@pytest.mark.parametrize("meta,match", [
    ({"yaml": {"nc": 3}}, "yaml says nc=3"),
    ({"yaml": {"scale": "s"}}, "yaml says scale 's'"),
    ({"stride": [8.0, 16.0, 32.0, 64.0]}, r"strides \[8, 16, 32, 64\] are not \[8, 16, 32\]"),
])
def test_checkpoint_records_that_disagree_are_refused(meta, match):
    with pytest.raises(TableError, match=match):
        config_of(shapes_only(architecture("yolov8", "n")), "y.pt", meta)


def test_refusals_name_the_file_the_row_and_the_key():
    v8 = shapes_only(architecture("yolov8", "n"))
    with pytest.raises(TableError, match=r"^w.pt: closest table yolov8 at scale n: row 4 \(C2f\): "
                                         r"model.4.m.1.cv2.bn.weight \[32\] is missing from the weights$"):
        config_of({k: v for k, v in v8.items() if k != "model.4.m.1.cv2.bn.weight"}, "w.pt")
    with pytest.raises(TableError, match=r"row 21 \(C2f\): model.21.cv2.conv.weight has shape \[1, 2, 3, 4\]"):
        config_of({**v8, "model.21.cv2.conv.weight": np.zeros((1, 2, 3, 4), np.float32)}, "w.pt")
    with pytest.raises(TableError, match="no row: extra.weight is not in the table"):
        config_of({**v8, "extra.weight": np.zeros((1, 2), np.float32)}, "w.pt")
    with pytest.raises(TableError, match="no table of .* has the head these weights hold"):
        config_of({"model.24.anchors": np.zeros(18)}, "v5.pt")
    with pytest.raises(TableError, match=r"row 22 \(Detect\): model.22.proto.cv1.conv.weight is not in the table"):
        config_of({**v8, "model.22.proto.cv1.conv.weight": np.zeros((1, 1, 1, 1))}, "seg.pt")
    with pytest.raises(TableError, match="resnet.pt: no table of yolo11, .* has the head these weights hold"):
        config_of({"conv1.weight": np.zeros(3)}, "resnet.pt")
