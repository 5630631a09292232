"""Configuration from YOLOv8 / YOLO11 weights: every official scale, custom scalings, head forms, checkpoint
records (SPPF activation, yaml, names) and the one-line refusals."""
import numpy as np
import pytest
import torch

from zoo.yolov8.config import ConfigError, infer_config
from reference_yolov8 import SCALES, Architecture, YoloV8, architecture


def shapes_only(arch: Architecture, flat: bool = False) -> dict:
    """state_dict-like arrays of the right shapes without allocating them (zero-stride views)."""
    with torch.device("meta"):
        state = YoloV8(arch).state_dict()
    return {k: np.broadcast_to(np.float32(0), (int(np.prod(v.shape)),) if flat else tuple(v.shape))
            for k, v in state.items()}


@pytest.mark.parametrize("family,scale", [(f, s) for f in SCALES for s in SCALES[f]])
def test_every_official_scale_is_recognised(family, scale):
    config = infer_config(shapes_only(architecture(family, scale, num_classes=7)), "w")
    assert config.variant == f"{family}{scale}" and config.num_classes == 7 and config.reg_max == 16
    assert config.depthwise_head == (family == "yolo11")


@pytest.mark.parametrize("arch", [
    Architecture("yolov8", depth=0.5, width=0.375, max_channels=640, num_classes=3),
    Architecture("yolo11", depth=1.0, width=0.75, max_channels=768, num_classes=1, reg_max=8,
                 c3k=((2, True), (4, False), (6, False), (8, True), (13, True), (16, False), (19, True), (22, False))),
    Architecture("yolo11", depth=0.5, width=0.25, max_channels=1024, depthwise_head=False),  # plain head on 11
])
def test_custom_scalings_reproduce_every_shape(arch):
    tensors = shapes_only(arch, flat=True)  # from value counts alone, as a .wts gives them
    config = infer_config(tensors, "custom.wts")
    with torch.device("meta"):
        want = {k: tuple(v.shape) for k, v in YoloV8(arch).state_dict().items()}
        got = {k: tuple(v.shape) for k, v in config.build_module().state_dict().items()}
    assert got == want
    assert config.reg_max == arch.reg_max and config.num_classes == arch.num_classes


def test_checkpoint_record_decides_the_sppf_activation():
    tensors = shapes_only(architecture("yolo11", "n"))
    meta = {"activations": {"model.9.cv1": "torch.nn.modules.linear.Identity",
                            "model.9.cv2": "torch.nn.modules.activation.SiLU",
                            "model.10.m.0.attn.qkv": "torch.nn.modules.linear.Identity"},
            "yaml": {"nc": 80, "scale": "n"}, "names": {i: f"c{i}" for i in range(80)}, "stride": [8.0, 16.0, 32.0]}
    config = infer_config(tensors, "y.pt", meta)
    assert config.sppf_act is False and config.class_names[:2] == ("c0", "c1")
    assert infer_config(tensors, "y.wts").sppf_act is True                       # nothing recorded: SiLU
    assert infer_config(tensors, "y.wts", sppf_act=False).sppf_act is False      # the flag
    with pytest.raises(ConfigError, match="--sppf-act silu contradicts the checkpoint"):
        infer_config(tensors, "y.pt", meta, sppf_act=True)


@pytest.mark.parametrize("meta,match", [
    ({"activations": {"model.4.cv1": "torch.nn.modules.activation.ReLU"}}, "model.4.cv1 has activation .*ReLU"),
    ({"yaml": {"nc": 3}}, "yaml says nc=3"),
    ({"yaml": {"scale": "s"}}, "yaml says scale 's'"),
    ({"stride": [8.0, 16.0, 32.0, 64.0]}, "only P3-P5"),
])
def test_checkpoint_records_that_disagree_are_refused(meta, match):
    with pytest.raises(ConfigError, match=match):
        infer_config(shapes_only(architecture("yolov8", "n")), "y.pt", meta)


def test_refusals_name_the_file_and_the_key():
    v8 = shapes_only(architecture("yolov8", "n"))
    with pytest.raises(ConfigError, match=r"^w.pt: 1 key\(s\) of yolov8n missing: model.4.m.1.cv2.bn.weight"):
        infer_config({k: v for k, v in v8.items() if k != "model.4.m.1.cv2.bn.weight"}, "w.pt")
    with pytest.raises(ConfigError, match="model.21.cv2.conv.weight has shape"):
        infer_config({**v8, "model.21.cv2.conv.weight": np.zeros((1, 2, 3, 4), np.float32)}, "w.pt")
    with pytest.raises(ConfigError, match="unexpected key.*extra.weight"):
        infer_config({**v8, "extra.weight": np.zeros((1, 2), np.float32)}, "w.pt")
    with pytest.raises(ConfigError, match="YOLOv5 weights; use python -m zoo.yolov5"):
        infer_config({"model.24.anchors": np.zeros(18)}, "v5.pt")
    with pytest.raises(ConfigError, match="segmentation"):
        infer_config({**v8, "model.22.proto.cv1.conv.weight": np.zeros((1, 1, 1, 1))}, "seg.pt")
    with pytest.raises(ConfigError, match="not YOLOv8 / YOLO11 detection weights.*first keys: conv1.weight"):
        infer_config({"conv1.weight": np.zeros(3)}, "resnet.pt")
