"""YOLOv5 v7.0 segment and classify: key sets against the reference sheet, every layer of the network against the
PyTorch reference (random weights and a pickled upstream-style checkpoint), configuration read from the weights,
and the infer command's masks and top-5."""
import argparse
import json
import numpy as np
import pytest
import torch

from wts.weight_map import WeightMap
from zoo.engine import validate
from zoo.engine.backends import ReferenceBackend
from zoo.engine.cli import main
from zoo.engine.model import state_dict_arrays
from zoo.engine.networks import define_network
from zoo.vision.masks import decode_rle
from zoo.yolov5.config import ConfigError, infer_config
from zoo.yolov5.tasks import YoloV5Classify, YoloV5Segment, random_yolov5_classify, random_yolov5_segment
from zoo.yolov5.zoo_model import YoloV5Model

from upstream_pickle import save_upstream_checkpoint

MODEL = YoloV5Model()
IMAGES = "tests/data/images"


def _args(size, decode="plugin"):
    return argparse.Namespace(input_size=size, decode=decode, variant=None, num_classes=None, task="detect")


def _validate(module, size, decode="plugin", weights=None):
    weights = weights or WeightMap(state_dict_arrays(module), "random")
    config = MODEL.config_from_weights(weights, _args(size, decode))
    x = torch.from_numpy(MODEL.sample_input(config, 2, seed=3))
    expected = validate.reference_outputs(module, x)
    backend = ReferenceBackend()
    net, outputs = define_network(MODEL, backend, weights, config)
    names = validate.mark_comparable(net, set(expected))
    got = backend.runner_for(net).run({MODEL.input_name: x.numpy()})
    rows = [validate.compare(n, got[n], expected[n], 1e-4) for n in names]
    rows += [validate.compare(f"output:{n}", got[n], expected[f"__output__{i or ''}"], 1e-4)
             for i, n in enumerate(outputs)]
    bad = [r for r in rows if not r.ok]
    assert not bad, validate.format_table(bad, "tolerance 1e-4")
    return config, rows


def test_key_counts_and_shapes_match_the_sheet():
    with torch.device("meta"):
        seg, cls = YoloV5Segment(80, 0.33, 0.5), YoloV5Classify(1000, 0.33, 0.5)
    seg_keys, cls_keys = seg.state_dict(), cls.state_dict()
    assert len(seg_keys) == 367 and len(cls_keys) == 194  # docs/yolov5.md: s-seg 367, s-cls 194
    assert sum(p.numel() for p in seg.parameters()) == 7_621_277
    assert tuple(seg_keys["model.24.m.0.weight"].shape) == (351, 128, 1, 1)
    assert tuple(seg_keys["model.24.proto.cv1.conv.weight"].shape) == (128, 128, 3, 3)
    assert tuple(seg_keys["model.24.proto.cv3.conv.weight"].shape) == (32, 128, 1, 1)
    assert tuple(cls_keys["model.9.conv.conv.weight"].shape) == (1280, 512, 1, 1)
    assert tuple(cls_keys["model.9.linear.weight"].shape) == (1000, 1280)
    assert not any(k.startswith(("model.10.", "model.9.cv")) for k in cls_keys)


def test_segment_decode_leaves_mask_coefficients_raw():
    module = random_yolov5_segment("n", num_classes=3, seed=2, calib_size=64)
    x = torch.rand(1, 3, 64, 64)
    with torch.no_grad():
        pred, protos = module(x)
        raw = module.detect.raw(module.features(x))
    assert pred.shape == (1, 3 * (8 * 8 + 4 * 4 + 2 * 2), 5 + 3 + 32) and protos.shape == (1, 32, 16, 16)
    level0 = raw[0].view(1, 3, 40, 8, 8).permute(0, 1, 3, 4, 2).reshape(1, -1, 40)
    torch.testing.assert_close(pred[0, :192, 8:], level0[0, :, 8:])  # raw
    torch.testing.assert_close(pred[0, :192, 4:8], level0[0, :, 4:8].sigmoid())


@pytest.fixture(scope="module")
def seg_n():
    return random_yolov5_segment("n", seed=0, calib_size=64)


def test_yolov5n_seg_every_layer_matches_pytorch(seg_n):
    """The plugin decode; the layers decode is the detector's (tests/test_yolov5_build.py), and the mask
    coefficients join either the same way."""
    config, rows = _validate(seg_n, (64, 96), "plugin")
    assert config["task"] == "segment" and config["num_masks"] == 32 and config["num_protos"] == 64
    assert any(r.name == "model.24.proto" for r in rows) and any(r.name == "output:model.24.proto" for r in rows)


def test_yolov5s_seg_and_cls_every_layer_matches_pytorch():
    config, _ = _validate(random_yolov5_segment("s", num_classes=80, seed=1, calib_size=64), (64, 64))
    assert (config["variant"], config["num_protos"]) == ("s", 128)
    config, rows = _validate(random_yolov5_classify("s", num_classes=1000, seed=1, calib_size=64), (64, 64))
    assert (config["task"], config["num_classes"], config["input_size"]) == ("classify", 1000, [64, 64])
    assert [r.name for r in rows][-5:] == ["model.9.conv", "model.9.pool", "model.9.drop", "model.9", "output:model.9"]


def test_config_from_flat_wts_counts_and_refusals():
    seg = state_dict_arrays(YoloV5Segment(5, 0.33, 0.25))  # untrained: only keys, shapes and anchors matter
    config = infer_config({k: v.reshape(-1) for k, v in seg.items()})
    assert (config.task, config.num_classes, config.num_masks, config.num_protos) == ("segment", 5, 32, 64)
    cls = state_dict_arrays(YoloV5Classify(7, 0.33, 0.25))
    config = infer_config({k: v.reshape(-1) for k, v in cls.items()})
    assert (config.task, config.num_classes, config.width_multiple) == ("classify", 7, 0.25)
    del seg["model.24.proto.cv2.conv.weight"]
    with pytest.raises(ConfigError, match=r"1 key\(s\) of YOLOv5n-seg missing: model\.24\.proto\.cv2\.conv\.weight"):
        infer_config(seg, source_name="x.pt")
    v8ish = {"model.0.conv.weight": np.zeros((16, 3, 3, 3)), "model.2.cv1.conv.weight": np.zeros((32, 32, 1, 1))}
    with pytest.raises(ConfigError, match="YOLOv8/YOLO11 weights; use python -m zoo.yolov8"):
        infer_config(v8ish, source_name="yolov8n-seg.pt")


def _upstream_style_checkpoint(module, path, class_name, names):
    save_upstream_checkpoint(module, path, "models.yolo", class_name, names=names)


def test_pickled_checkpoints_validate_and_infer(tmp_path, capsys):
    seg = random_yolov5_segment("n", num_classes=3, seed=4, calib_size=64)
    _upstream_style_checkpoint(seg, tmp_path / "yolov5n-seg.pt", "SegmentationModel", ["a", "b", "c"])
    assert main(MODEL, ["validate", "--weights", str(tmp_path / "yolov5n-seg.pt"), "--input-size", "64"]) == 0
    assert "layers pass" in capsys.readouterr().out
    out = tmp_path / "runs"
    assert main(MODEL, ["infer", "--weights", str(tmp_path / "yolov5n-seg.pt"), "--input-size", "64", "--source",
                        IMAGES, "--out", str(out), "--conf", "0.3", "--max-det", "5"]) == 0
    records = [json.loads(line) for line in (out / "predictions.jsonl").read_text().splitlines()]
    with_dets = [r for r in records if r.get("detections")]
    assert with_dets, "random weights at conf 0.3 should keep some boxes"
    for record in with_dets:
        from zoo.vision.images import read_image
        h, w = read_image(record["file"]).shape[:2]
        for det in record["detections"]:
            assert det["class_name"] in ("a", "b", "c") and det["mask"]["size"] == [h, w]
            mask = decode_rle(det["mask"])
            x1, y1, x2, y2 = det["box"]
            ys, xs = np.nonzero(mask)
            if len(xs):  # the mask lies within its box (cropped at proto resolution, one cell of slack)
                slack = 4 * max(h, w) / 64 + 1
                assert xs.min() >= x1 - slack and xs.max() <= x2 + slack
                assert ys.min() >= y1 - slack and ys.max() <= y2 + slack
    assert (out / "street.jpg").exists()

    cls = random_yolov5_classify("n", num_classes=4, seed=4, calib_size=64)
    _upstream_style_checkpoint(cls, tmp_path / "yolov5n-cls.pt", "ClassificationModel", ["w", "x", "y", "z"])
    capsys.readouterr()
    assert main(MODEL, ["validate", "--weights", str(tmp_path / "yolov5n-cls.pt"), "--input-size", "64"]) == 0
    assert main(MODEL, ["infer", "--weights", str(tmp_path / "yolov5n-cls.pt"), "--input-size", "64", "--source",
                        f"{IMAGES}/street.jpg"]) == 0
    record = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert len(record["top"]) == 4 and {t["class_name"] for t in record["top"]} == {"w", "x", "y", "z"}
    scores = [t["score"] for t in record["top"]]
    assert scores == sorted(scores, reverse=True) and sum(scores) == pytest.approx(1, abs=1e-4)
