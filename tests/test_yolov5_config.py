"""Config inference from YOLOv5 weights: shapes (.pt) and flat value counts (.wts), and every refusal message."""

import re

import numpy as np
import pytest
import torch

from zoo.yolov5.config import (ConfigError, YoloV5Config, check_weights, expected_shapes, infer_config,
                               solve_depth_multiple, solve_width_multiple)
from reference_yolov5 import VARIANTS, scale_depth, scale_width

ALL_VARIANTS = [v + p for p in ("", "6") for v in VARIANTS]


def fake_weights(config: YoloV5Config, flat: bool = False, tensorrtx: bool = False) -> dict[str, np.ndarray]:
    """State-dict-like arrays of the right shapes without allocating them (zeros broadcast), real anchors."""
    out = {}
    for key, shape in expected_shapes(config).items():
        arr = np.broadcast_to(np.float32(0), shape)
        out[key] = arr.reshape(-1) if flat else arr
    d = f"model.{config.detect_index}"
    out[f"{d}.anchors"] = config.anchors_grid.reshape(-1) if flat else config.anchors_grid
    if tensorrtx:
        px = np.asarray(config.anchors_px, dtype=np.float32)
        out[f"{d}.anchor_grid"] = px.reshape(-1) if flat else px
        out[f"{d}.strides"] = np.asarray(config.strides, dtype=np.float32)
    return out


def same(a: YoloV5Config, b: YoloV5Config) -> bool:
    return (a.num_classes, a.depth_multiple, a.width_multiple, a.p6, a.anchors_px) == \
        (b.num_classes, b.depth_multiple, b.width_multiple, b.p6, b.anchors_px)


@pytest.mark.parametrize("variant", ALL_VARIANTS)
@pytest.mark.parametrize("flat", [False, True], ids=["shapes", "counts"])
def test_round_trip_official_variants(variant, flat):
    config = YoloV5Config.from_variant(variant)
    got = infer_config(fake_weights(config, flat=flat))
    assert same(got, config) and got.variant == variant
    assert got.strides == ((8, 16, 32, 64) if variant.endswith("6") else (8, 16, 32))
    assert got.num_anchors == 3 and got.num_outputs == 85


@pytest.mark.parametrize("gd,gw,p6,nc", [(0.5, 0.3, False, 3), (0.25, 0.125, False, 1), (2.0, 1.5, False, 7),
                                         (0.67, 0.2, True, 5), (0.1, 0.4, True, 80), (1.0, 0.55, False, 2)])
def test_round_trip_custom_multiples(gd, gw, p6, nc):
    config = YoloV5Config(num_classes=nc, depth_multiple=gd, width_multiple=gw, p6=p6)
    for flat in (False, True):
        got = infer_config(fake_weights(config, flat=flat))
        assert got.variant is None or got.variant == config.variant
        assert got.num_classes == nc and got.p6 == p6
        # the inferred multiples reproduce every channel count and repeat, hence the same keys and shapes
        assert expected_shapes(got) == expected_shapes(config)


def test_solvers_pick_reproducing_values():
    widths = {c: scale_width(c, 0.3) for c in (64, 128, 256, 512, 1024)}
    assert solve_width_multiple(widths) == 0.3  # the shortest decimal that reproduces them
    widths = {c: scale_width(c, 0.125) for c in (64, 128, 256, 512, 1024)}
    gw = solve_width_multiple(widths)
    assert all(scale_width(c, gw) == w for c, w in widths.items())
    assert solve_width_multiple({64: 16, 128: 32, 256: 64, 512: 128, 1024: 256}) == 0.25
    repeats = {n: scale_depth(n, 0.5) for n in (3, 6, 9)}  # 2, 3, 4 (round half to even)
    gd = solve_depth_multiple(repeats)
    assert all(scale_depth(n, gd) == r for n, r in repeats.items())
    assert solve_depth_multiple({3: 1, 6: 2, 9: 3}) == 0.33
    with pytest.raises(ConfigError, match=r"no width_multiple reproduces the channel counts \(yaml width -> "
                                          r"channels: 64->16, 128->64"):
        solve_width_multiple({64: 16, 128: 64})
    with pytest.raises(ConfigError, match="no depth_multiple reproduces the C3 repeat counts"):
        solve_depth_multiple({3: 3, 6: 1, 9: 9})


def test_custom_anchors_and_classes():
    anchors = (((5, 7), (9, 11)), ((20, 24), (33, 40)), ((80, 64), (120, 200.5)))
    config = YoloV5Config(num_classes=4, anchors_px=anchors, class_names=["a", "b", "c", "d"])
    assert config.num_anchors == 2 and config.num_outputs == 9
    got = infer_config(fake_weights(config, flat=True), class_names=["a", "b", "c", "d"])
    assert got.anchors_px == config.anchors_px and got.num_anchors == 2 and got.class_names == ("a", "b", "c", "d")
    assert expected_shapes(got)["model.24.m.0.bias"] == (18,)
    # the reference module takes the same anchors
    module = got.build_module()
    assert torch.equal(module.detect.anchors, torch.from_numpy(config.anchors_grid))


@pytest.mark.parametrize("flat", [False, True])
def test_tensorrtx_anchor_grid_and_strides(flat):
    config = YoloV5Config.from_variant("s6", num_classes=2)
    w = fake_weights(config, flat=flat, tensorrtx=True)
    assert same(infer_config(w), config)
    # anchor_grid alone is enough to infer (check=False), but an official state_dict always has 'anchors'
    del w["model.33.anchors"]
    assert infer_config(w, check=False).anchors_px == config.anchors_px
    with pytest.raises(ConfigError, match=r"1 key\(s\) of YOLOv5s6 missing: model\.33\.anchors"):
        infer_config(w)


def test_real_module_state_dict_round_trip():
    config = YoloV5Config(num_classes=3, depth_multiple=0.33, width_multiple=0.25)
    sd = {k: v.numpy() for k, v in config.build_module().state_dict().items()}
    assert same(infer_config(sd, source_name="yolov5n-custom.pt"), config)
    flat = {k: v.reshape(-1).astype(np.float32) for k, v in sd.items()}  # what a .wts gives
    assert same(infer_config(flat), config)
    # num_batches_tracked is optional (never read)
    no_nbt = {k: v for k, v in sd.items() if not k.endswith("num_batches_tracked")}
    assert same(infer_config(no_nbt), config)


def test_expected_shapes_are_the_module_state_dict():
    config = YoloV5Config.from_variant("n", num_classes=5)
    sd = config.build_module().state_dict()
    assert list(expected_shapes(config).items()) == [(k, tuple(v.shape)) for k, v in sd.items()]


def test_config_properties_and_validation():
    c = YoloV5Config.from_variant("m6")
    assert c.variant == "m6" and c.detect_index == 33 and c.max_stride == 64 and c.num_levels == 4
    assert c.num_predictions(640, 640) == 25500 and YoloV5Config().num_predictions(640, 640) == 25200
    assert YoloV5Config(depth_multiple=0.4).variant is None
    c.check_input_size(1280, 640)
    with pytest.raises(ConfigError, match="input size 640x600 must be positive multiples of 64"):
        c.check_input_size(640, 600)
    with pytest.raises(ConfigError, match="a P6 model has 4 detection levels, but 3 anchor levels were given"):
        YoloV5Config(p6=True, anchors_px=YoloV5Config().anchors_px)
    with pytest.raises(ConfigError, match="num_classes must be a positive integer"):
        YoloV5Config(num_classes=0)
    with pytest.raises(ConfigError, match="2 class names for 80 classes"):
        YoloV5Config(class_names=["a", "b"])
    with pytest.raises(ConfigError, match="same .non-zero. number of anchors"):
        YoloV5Config(anchors_px=(((1, 2),), ((1, 2), (3, 4)), ((1, 2),)))
    assert hash(c) == hash(YoloV5Config.from_variant("m6"))


# ------------------------------------------------------------------------------------------------ refusals


def test_refuses_focus_stem_v5():
    w = fake_weights(YoloV5Config())
    w["model.0.conv.conv.weight"] = np.zeros((32, 12, 3, 3), np.float32)
    del w["model.0.conv.weight"]
    with pytest.raises(ConfigError, match=r"ckpt\.pt: layer 0 is a Focus stem \(key 'model\.0\.conv\.conv\.weight'\)"
                                          r".*v5\.0-or-older.*v6\.0\+ \(v7\.0 architecture\) weights are required"):
        infer_config(w, source_name="ckpt.pt")


def test_refuses_other_architectures():
    resnet = {"conv1.weight": np.zeros((64, 3, 7, 7)), "bn1.weight": np.zeros(64), "fc.weight": np.zeros((10, 4))}
    with pytest.raises(ConfigError, match=r"resnet50\.wts: not YOLOv5 weights: no key "
                                          r"'model\.0\.conv\.weight'.*"
                                          r"first keys: conv1\.weight, bn1\.weight, fc\.weight"):
        infer_config(resnet, source_name="resnet50.wts")
    with pytest.raises(ConfigError, match="not YOLOv5 weights"):
        check_weights(resnet, YoloV5Config(), "resnet50.wts")
    w = fake_weights(YoloV5Config())
    with pytest.raises(ConfigError, match="YOLOv8 weights"):
        infer_config({**w, "model.22.dfl.conv.weight": np.arange(16, dtype=np.float32)})
    # a classifier's or a segmenter's key among detection weights: read as that task, whose keys do not fit
    with pytest.raises(ConfigError, match=r"model\.9\.linear\.bias' is missing"):
        infer_config({**w, "model.9.linear.weight": np.zeros((1000, 1280), np.float32)})
    with pytest.raises(ConfigError, match=r"model\.24\.proto\.cv3\.conv\.weight' is missing"):
        infer_config({**w, "model.24.proto.cv1.conv.weight": np.zeros((128, 128, 3, 3), np.float32)})


def test_missing_keys_are_named():
    w = fake_weights(YoloV5Config.from_variant("s"))
    for k in ["model.4.m.1.cv2.bn.running_var", "model.17.cv3.conv.weight", "model.2.cv1.bn.bias"]:
        del w[k]
    msg = re.escape("yolov5s.pt: 3 key(s) of YOLOv5s missing: model.2.cv1.bn.bias, "
                    "model.4.m.1.cv2.bn.running_var, model.17.cv3.conv.weight")
    with pytest.raises(ConfigError, match=msg):
        infer_config(w, source_name="yolov5s.pt")
    w = fake_weights(YoloV5Config.from_variant("s"))
    for k in list(w)[1:10]:  # keep model.0.conv.weight
        del w[k]
    # 9 deleted, one of them a num_batches_tracked (optional): 8 reported, the first five named
    with pytest.raises(ConfigError, match=re.escape("x.pt: 8 key(s) of YOLOv5s missing: model.0.bn.weight, "
                                                    "model.0.bn.bias, model.0.bn.running_mean, model.0.bn.running_var, "
                                                    "model.1.conv.weight and 3 more")):
        check_weights(w, YoloV5Config.from_variant("s"), "x.pt")


def test_wrong_shape_names_key_and_both_shapes():
    config = YoloV5Config.from_variant("n")
    w = fake_weights(config)
    w["model.13.cv2.conv.weight"] = np.zeros((64, 256, 3, 3), np.float32)
    with pytest.raises(ConfigError, match=re.escape("n.pt: model.13.cv2.conv.weight has shape (64, 256, 3, 3), "
                                                    "expected (64, 256, 1, 1)")):
        check_weights(w, config, "n.pt")
    with pytest.raises(ConfigError, match=re.escape("model.13.cv2.conv.weight has shape (64, 256, 3, 3)")):
        infer_config(w, source_name="n.pt")


def test_wrong_count_names_key_and_both_counts():
    config = YoloV5Config.from_variant("n")
    w = fake_weights(config, flat=True)
    w["model.20.cv3.bn.weight"] = np.zeros(7, np.float32)
    with pytest.raises(ConfigError, match=re.escape("n.wts: model.20.cv3.bn.weight has 7 values, expected 128 "
                                                    "(shape (128,))")):
        infer_config(w, source_name="n.wts")


def test_weights_of_another_class_count():
    w = fake_weights(YoloV5Config.from_variant("s", num_classes=3), flat=True)
    with pytest.raises(ConfigError, match=re.escape("s.wts: model.24.m.0.weight has 3072 values, expected 32640 "
                                                    "(shape (255, 128, 1, 1))")):
        check_weights(w, YoloV5Config.from_variant("s"), "s.wts")
    assert infer_config(w).num_classes == 3


def test_weights_of_another_variant():
    w = fake_weights(YoloV5Config.from_variant("m"))
    with pytest.raises(ConfigError, match=re.escape("m.pt: model.0.conv.weight has shape (48, 3, 6, 6), expected "
                                                    "(32, 3, 6, 6)")):
        check_weights(w, YoloV5Config.from_variant("s"), "m.pt")
    w = fake_weights(YoloV5Config(depth_multiple=0.67, width_multiple=0.5))  # s widths, m depth
    with pytest.raises(ConfigError, match=r"d\.pt: 132 unexpected key\(s\) for YOLOv5s: "
                                          r"model\.2\.m\.1\.cv1\.conv\.weight"):
        check_weights(w, YoloV5Config.from_variant("s"), "d.pt")


def test_unexpected_key():
    w = fake_weights(YoloV5Config())
    w["model.25.conv.weight"] = np.zeros(3, np.float32)
    with pytest.raises(ConfigError, match=re.escape("w.pt: 1 unexpected key(s) for YOLOv5s: model.25.conv.weight")):
        infer_config(w, source_name="w.pt")


def test_anchor_value_mismatches():
    config = YoloV5Config()
    w = fake_weights(config)
    w["model.24.anchors"] = config.anchors_grid * 2
    # inference takes the anchors from the weights; checking against another config names the key and values
    assert infer_config(w).anchors_px[0][0] == (20.0, 26.0)
    with pytest.raises(ConfigError, match=r"model\.24\.anchors \(grid units\) = \[2\.5, 3\.25.* do not match the "
                                          r"config's anchors \[1\.25, 1\.625"):
        check_weights(w, config, "a.pt")
    w = fake_weights(config, tensorrtx=True)
    w["model.24.strides"] = np.array([8, 16, 64], np.float32)
    with pytest.raises(ConfigError, match=r"model\.24\.strides = \[8\.0, 16\.0, 64\.0\], expected \[8, 16, 32\]"):
        infer_config(w)
    w = fake_weights(config, tensorrtx=True)
    w["model.24.anchor_grid"] = w["model.24.anchor_grid"] + 1
    with pytest.raises(ConfigError, match=r"model\.24\.anchor_grid \(pixels\) = \[11\.0, 14\.0.*does not match "
                                          r"anchors \* strides = \[10\.0, 13\.0"):
        infer_config(w)


def test_counts_that_do_not_divide():
    w = fake_weights(YoloV5Config(), flat=True)
    w["model.0.conv.weight"] = np.zeros(100, np.float32)
    with pytest.raises(ConfigError, match=r"model\.0\.conv\.weight has 100 values, which is not a positive multiple "
                                          r"of 108 \(c_out \* 3 \* 6 \* 6\)"):
        infer_config(w)
    w = fake_weights(YoloV5Config(), flat=True)
    w["model.24.m.0.bias"] = np.zeros(256, np.float32)
    with pytest.raises(ConfigError, match=r"model\.24\.m\.0\.bias has 256 values, which is not a positive multiple "
                                          r"of 3"):
        infer_config(w)
    w["model.24.m.0.bias"] = np.zeros(15, np.float32)
    with pytest.raises(ConfigError, match="leaves no classes"):
        infer_config(w)
    w = fake_weights(YoloV5Config(), flat=True)
    w["model.24.anchors"] = np.zeros(17, np.float32)
    with pytest.raises(ConfigError, match=r"model\.24\.anchors has 17 values"):
        infer_config(w)
    w = fake_weights(YoloV5Config(), flat=True)
    del w["model.24.anchors"]
    with pytest.raises(ConfigError, match="no anchors: neither 'model.24.anchors' nor 'model.24.anchor_grid'"):
        infer_config(w)


def test_inconsistent_depth_and_width():
    w = fake_weights(YoloV5Config())
    for k in [k for k in w if k.startswith("model.13.m.0.")]:
        w[k.replace("m.0.", "m.1.")] = w[k]
    with pytest.raises(ConfigError, match=r"C3 layers with the same yaml repeat count \(3\) have different bottleneck "
                                          r"counts \(1 and 2, at model\.13\)"):
        infer_config(w)
    w = fake_weights(YoloV5Config())
    for k in [k for k in w if k.startswith("model.17.m.")]:
        del w[k]
    with pytest.raises(ConfigError, match=r"C3 layer model\.17 has no bottlenecks"):
        infer_config(w)
    # a stride-2 conv whose width breaks the scaling rule (yolov5s layer 5 with 200 instead of 256 channels)
    w = fake_weights(YoloV5Config(), flat=True)
    w["model.5.conv.weight"] = np.zeros(200 * 128 * 9, np.float32)
    w["model.7.conv.weight"] = np.zeros(512 * 200 * 9, np.float32)
    with pytest.raises(ConfigError, match="no width_multiple reproduces the channel counts"):
        infer_config(w)
