"""Every variant of every classifier family is read back from its own weights (registry-driven: a family added
later is covered with no edit), and the pre-processing numbers of the families whose crops differ per variant.

- Variants: each family's reference module for each variant of its registry entry is made on the meta device (no
  memory), its state_dict flattened into zero-stride arrays of the right value counts (what a .wts gives: keys and
  counts, no shapes), and `config_from_weights` without --variant must name that variant. B1 and B2 of
  EfficientNet (and MobileNetV2's widths 0.35 and 0.5) share stem and block counts: only a width-dependent count
  tells them apart.
- MobileNetV2's width multipliers are not registry variants (torchvision ships 1.0 only): each is read back from a
  module of that width.
- EfficientNet's crops are torchvision's (its weights' transforms, written out here): crop, resize, bicubic.
"""
from __future__ import annotations

import cv2
import numpy as np
import pytest
import torch

from layerwise import args
from wts.weight_map import WeightMap
from zoo.engine.cli import make_parser
from zoo.registry import families

# families whose variants are not chosen by --variant, and why (any other family without the flag fails the test)
NO_VARIANT_FLAG = {
    "mtcnn": "a cascade of three fixed networks (pnet, rnet, onet), not alternatives",
    "ppocr": "v5 and v4 are pipelines of three trained networks read from their files (tests/test_ppocr_*.py)",
    "yolov8": "the scale is read from the checkpoint's own table (tests/test_yolov8_config.py)",
    "yolo11": "the scale is read from the checkpoint's own table (tests/test_yolov8_config.py)",
    **{name: "the scale (--scale for random weights) is read from the weights' value counts: tests/test_yolo_walker.py "
             "finds every official scale again" for name in ("yolo26", "yolov10", "yolo12", "yolov9")},
}


def zero_stride_weights(module: torch.nn.Module) -> WeightMap:
    """A module's state_dict as flat arrays of the right value counts and no memory (as from a .wts)."""
    return WeightMap({k: np.broadcast_to(np.float32(0), (v.numel(),)) for k, v in module.state_dict().items()},
                     "x.wts")


def _cases():
    for family in families():
        for variant in family.variants:
            yield pytest.param(family, variant, id=f"{family.name}:{variant}")


@pytest.mark.parametrize("family, variant", list(_cases()))
def test_every_variant_is_read_back_from_its_own_value_counts(family, variant):
    if family.name in NO_VARIANT_FLAG:
        pytest.skip(NO_VARIANT_FLAG[family.name])
    model = family.load()
    parser = make_parser(model)
    has_flag = any("--variant" in a.option_strings for a in parser._subparsers._group_actions[0].choices[
        "validate"]._actions)
    if has_flag:
        made = parser.parse_args(["validate", "--variant", variant])
    else:
        assert family.variants == (variant,), f"{family.name} has several variants and no --variant flag"
        made = parser.parse_args(["validate"])
    with torch.device("meta"):
        module = model.random_module(made, 0)
    config = model.config_from_weights(zero_stride_weights(module), parser.parse_args(["validate"]))
    # YOLOv5's registry lists scales ("n"), its configuration names the model ("yolov5n")
    assert model.variant(config) in (variant, f"{family.name}{variant}")


def test_every_mobilenet_v2_width_is_read_back_from_its_own_counts():
    from zoo.mobilenet.model import V2_WIDTHS, MobileNetModel, MobileNetV2
    assert V2_WIDTHS == (0.35, 0.5, 0.75, 1.0, 1.3, 1.4)
    for width in V2_WIDTHS:
        with torch.device("meta"):
            module = MobileNetV2(width, 1000)
        config = MobileNetModel().config_from_weights(zero_stride_weights(module),
                                                      args(variant=None, num_classes=1000, input_size=224))
        assert (config["variant"], config["width"]) == ("mobilenet_v2", width)


# torchvision's EfficientNet weights: variant -> (crop, resize), all bicubic (EfficientNet_Bn_Weights.IMAGENET1K_V1)
EFFICIENTNET_CROPS = {"efficientnet_b0": (224, 256), "efficientnet_b1": (240, 256), "efficientnet_b2": (288, 288),
                      "efficientnet_b3": (300, 320), "efficientnet_b4": (380, 384), "efficientnet_b5": (456, 456),
                      "efficientnet_b6": (528, 528), "efficientnet_b7": (600, 600)}


@pytest.mark.parametrize("variant", sorted(EFFICIENTNET_CROPS))
def test_efficientnet_crops_are_torchvisions(variant):
    from zoo.efficientnet.model import EfficientNetModel
    crop, resize = EFFICIENTNET_CROPS[variant]
    spec = EfficientNetModel().crop_spec({"variant": variant, "input_size": crop})
    assert (spec.crop, spec.resize, spec.interpolation) == (crop, resize, cv2.INTER_CUBIC)
    assert spec.mean == (0.485, 0.456, 0.406) and spec.std == (0.229, 0.224, 0.225)


# torchvision's EfficientNet_V2 weights: crop, resize, interpolation, mean/std (V2-L is the TF port's 0.5/0.5)
IMAGENET = ((0.485, 0.456, 0.406), (0.229, 0.224, 0.225))
EFFICIENTNET_V2_CROPS = {"efficientnet_v2_s": (384, 384, cv2.INTER_LINEAR, IMAGENET),
                         "efficientnet_v2_m": (480, 480, cv2.INTER_LINEAR, IMAGENET),
                         "efficientnet_v2_l": (480, 480, cv2.INTER_CUBIC, ((0.5,) * 3, (0.5,) * 3))}


@pytest.mark.parametrize("variant", sorted(EFFICIENTNET_V2_CROPS))
def test_efficientnet_v2_crops_are_torchvisions(variant):
    from zoo.efficientnet.model import EfficientNetModel
    crop, resize, interpolation, (mean, std) = EFFICIENTNET_V2_CROPS[variant]
    model = EfficientNetModel()
    parser = make_parser(model)
    config = model.config_from_weights(zero_stride_weights(model.random_module(
        parser.parse_args(["validate", "--variant", variant]), 0)), parser.parse_args(["validate"])) \
        if variant == "efficientnet_v2_s" else {"variant": variant, "input_size": crop}
    assert config["input_size"] == crop  # the default input size is the weights' own crop
    spec = model.crop_spec(config)
    assert (spec.crop, spec.resize, spec.interpolation, spec.mean, spec.std) == (crop, resize, interpolation, mean, std)


@pytest.mark.parametrize("variant", ["efficientnet_b1", "efficientnet_b2"])
def test_efficientnet_b1_and_b2_weights_define_their_networks(variant):
    """The issue's failure: B2's weights were read as B1's, and the network then refused their shapes
    ("features.3.0.block.3.0.weight has shape (48, 144, 1, 1), the architecture expects (40, 144, 1, 1)")."""
    from zoo.efficientnet.model import EfficientNet, EfficientNetModel
    from zoo.engine.backends import ReferenceBackend
    from zoo.engine.model import state_dict_arrays
    from zoo.engine.networks import define_network
    model = EfficientNetModel()
    weights = WeightMap(state_dict_arrays(EfficientNet(variant)), f"{variant}.pth")
    config = model.config_from_weights(weights, args(variant=None, num_classes=1000, input_size=None))
    define_network(model, ReferenceBackend(), weights, config)  # every key taken with its own shape
    assert config["variant"] == variant and config["input_size"] == {"efficientnet_b1": 240,
                                                                     "efficientnet_b2": 288}[variant]
