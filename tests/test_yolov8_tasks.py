"""YOLOv8 / YOLO11 segment, pose, oriented boxes and classify: every layer of the network against the PyTorch
reference (random weights, n scale, 64 px), the task and its numbers read from flat weights and from pickled
ultralytics-style checkpoints (kpt_shape and class names from the checkpoint's record), the decodes against
independent derivations, and the infer command's records."""
import argparse
import json
import math

import numpy as np
import pytest
import torch

from wts.weight_map import WeightMap
from zoo.engine import validate
from zoo.engine.backends import ReferenceBackend
from zoo.engine.cli import main
from zoo.engine.model import state_dict_arrays
from zoo.engine.errors import UserError
from zoo.engine.networks import define_network
from zoo.vision.obb import corners
from zoo.yolov5.zoo_model import YoloV5Model
from zoo.yolov8.model import architecture
from zoo.yolov8.task_config import ConfigError, infer_task_config, keypoint_shape
from zoo.yolov8.task_model import YoloTaskModel
from zoo.yolov8.tasks import randomize_task_, task_module

from upstream_pickle import save_upstream_checkpoint

IMAGES = "tests/data/images"


def _args(size=(64, 64), decode="plugin", kpt_shape=None):
    return argparse.Namespace(input_size=size, decode=decode, sppf_act=None, family=None, kpt_shape=kpt_shape)


def random_task(family, task, classes=None, kpt_shape=(17, 3), seed=0):
    classes = classes or (1000 if task == "classify" else 80)
    module = task_module(architecture(family, "n", classes), task, kpt_shape=kpt_shape)
    return randomize_task_(module, seed, calib_size=64).eval()


def _validate(model, module, size=(64, 64), decode="plugin", kpt_shape=None):
    weights = WeightMap(state_dict_arrays(module), "random")
    config = model.config_from_weights(weights, _args(size, decode, kpt_shape))
    x = torch.from_numpy(model.sample_input(config, 1, seed=5))
    expected = validate.reference_outputs(module, x)
    backend = ReferenceBackend()
    net, outputs = define_network(model, backend, weights, config)
    names = validate.mark_comparable(net, set(expected))
    got = backend.runner_for(net).run({model.input_name: x.numpy()})
    rows = [validate.compare(n, got[n], expected[n], 1e-4) for n in names]
    rows += [validate.compare(f"output:{n}", got[n], expected[f"__output__{i or ''}"], 1e-4)
             for i, n in enumerate(outputs)]
    bad = [r for r in rows if not r.ok]
    assert not bad, validate.format_table(bad, "tolerance 1e-4")
    return config, rows, got, expected


@pytest.mark.parametrize("family, task, decode", [("yolov8", "segment", "plugin"), ("yolov8", "pose", "layers"),
                                                  ("yolo11", "obb", "layers"), ("yolov8", "classify", "plugin"),
                                                  ("yolo11", "classify", "plugin")])
def test_every_layer_matches_pytorch(family, task, decode):
    """One network per head (the n scale at 64 px; YOLO11's segment and pose heads are the same code on the
    YOLO11 neck, which its detection tests cover: they are validated in the README's validate runs)."""
    module = random_task(family, task)
    config, rows, _, _ = _validate(YoloTaskModel(family), module, decode=decode)
    suffix = {"segment": "-seg", "pose": "-pose", "obb": "-obb", "classify": "-cls"}[task]
    assert config["task"] == task and config["variant"] == f"{family}n{suffix}"
    names = [r.name for r in rows]
    head = 9 if (family, task) == ("yolov8", "classify") else 10 if task == "classify" else \
        22 if family == "yolov8" else 23
    assert f"output:model.{head}" in names
    if task == "segment":
        assert f"model.{head}.proto.upsample" in names and f"output:model.{head}.proto" in names
        assert config["num_protos"] == 64 and config["num_masks"] == 32
    if task in ("pose", "obb", "segment"):
        assert f"model.{head}.cv4.2.2" in names  # every level's extra branch validated


def test_pose_keypoints_and_obb_boxes_against_independent_decodes():
    """The pose head's keypoints and the OBB head's rotated boxes, re-derived here from the raw branch outputs."""
    pose = random_task("yolov8", "pose", kpt_shape=(5, 2), classes=2)
    obb = random_task("yolov8", "obb", classes=3)
    x = torch.rand(1, 3, 64, 64)
    with torch.no_grad():
        feats = pose.features(x)
        raw = [branch(f) for branch, f in zip(pose.head.cv4, feats)]
        out = pose(x)
    level, stride = raw[0][0], 8  # P3: (10, 8, 8)
    ys, xs = torch.meshgrid(torch.arange(8.0), torch.arange(8.0), indexing="ij")
    for k in range(5):
        torch.testing.assert_close(out[0, 4 + 2 + 2 * k, :64], ((level[2 * k] * 2 + xs) * stride).reshape(-1))
        torch.testing.assert_close(out[0, 4 + 2 + 2 * k + 1, :64], ((level[2 * k + 1] * 2 + ys) * stride).reshape(-1))
    with torch.no_grad():
        feats = obb.features(x)
        head = obb.head
        box_logits = head.cv2[0](feats[0])[0]                       # (64, 8, 8): 4 sides x 16 bins
        angle = (head.cv4[0](feats[0])[0, 0].sigmoid() - 0.25) * math.pi
        out = obb(x)
    probabilities = box_logits.view(4, 16, 8, 8).softmax(1)
    l, t, r, b = (probabilities * torch.arange(16.0).view(1, 16, 1, 1)).sum(1)
    cx, cy = xs + 0.5, ys + 0.5
    dx, dy = (r - l) / 2, (b - t) / 2  # the box's own centre offset, turned by the angle
    centre_x = cx + dx * angle.cos() - dy * angle.sin()
    centre_y = cy + dx * angle.sin() + dy * angle.cos()
    want = torch.stack((centre_x, centre_y, l + r, t + b)).reshape(4, -1) * stride
    torch.testing.assert_close(out[0, :4, :64], want, rtol=1e-5, atol=1e-4)
    torch.testing.assert_close(out[0, -1, :64], angle.reshape(-1))


def test_task_and_numbers_from_flat_weights_and_refusals():
    for family in ("yolov8", "yolo11"):
        for task, extra in (("segment", {}), ("pose", {"kpt_shape": (5, 2)}), ("obb", {}), ("classify", {})):
            module = task_module(architecture(family, "n", 7), task, **extra)
            flat = {k: v.reshape(-1) for k, v in state_dict_arrays(module).items()}
            config = infer_task_config(flat)
            assert (config.task, config.num_classes, config.scale) == (task, 7, "n")
            assert config.kpt_shape == (extra.get("kpt_shape") if task == "pose" else None)
    assert keypoint_shape(51, None, None, "w") == (17, 3) and keypoint_shape(10, None, None, "w") == (5, 2)
    assert keypoint_shape(12, {"yaml": {"kpt_shape": [6, 2]}}, None, "w") == (6, 2)
    with pytest.raises(ConfigError, match=r"--kpt-shape \[4, 3\] contradicts the checkpoint's kpt_shape \[6, 2\]"):
        keypoint_shape(12, {"yaml": {"kpt_shape": [6, 2]}}, (4, 3), "w")
    with pytest.raises(ConfigError, match=r"w: --kpt-shape \[5, 3\] does not fit the pose head's 12"):
        keypoint_shape(12, None, (5, 3), "w")
    seg = state_dict_arrays(task_module(architecture("yolov8", "n", 3), "segment"))
    with pytest.raises(ValueError, match="yolov8n-seg.pt: .*YOLOv8 weights; use python -m zoo.yolov8"):
        YoloV5Model().config_from_weights(WeightMap(seg, "yolov8n-seg.pt"), argparse.Namespace(
            input_size=None, decode="plugin"))
    seg11 = state_dict_arrays(task_module(architecture("yolo11", "n", 3), "segment"))
    with pytest.raises(ValueError, match="yolo11n-seg.pt: .*YOLOv8/YOLO11 weights; use python -m zoo.yolov8"):
        YoloV5Model().config_from_weights(WeightMap(seg11, "yolo11n-seg.pt"), argparse.Namespace(
            input_size=None, decode="plugin"))
    from zoo.yolov5.tasks import YoloV5Segment
    with pytest.raises(UserError, match=r"yolov5s-seg\.pt: a C3 block at model\.2 .*use python -m zoo\.yolov5"):
        YoloTaskModel().config_from_weights(WeightMap(state_dict_arrays(YoloV5Segment(3, 0.33, 0.25)),
                                                      "yolov5s-seg.pt"), _args())


def test_pickled_pose_and_classify_checkpoints(tmp_path, capsys):
    pose = random_task("yolov8", "pose", kpt_shape=(6, 2), classes=1)
    save_upstream_checkpoint(pose, tmp_path / "pose.pt", "ultralytics.nn.tasks", "PoseModel", names={0: "person"},
                             yaml={"nc": 1, "kpt_shape": [6, 2], "scale": "n"})
    model = YoloTaskModel("yolo11")
    assert main(model, ["validate", "--weights", str(tmp_path / "pose.pt"), "--input-size", "64"]) == 0
    assert "layers pass" in capsys.readouterr().out
    out = tmp_path / "runs"
    assert main(model, ["infer", "--weights", str(tmp_path / "pose.pt"), "--input-size", "64", "--source",
                        f"{IMAGES}/wide.jpg", "--out", str(out), "--conf", "0.1", "--max-det", "3"]) == 0
    (record,) = [json.loads(line) for line in (out / "predictions.jsonl").read_text().splitlines()]
    assert record["detections"], "random weights at conf 0.1 keep boxes"
    for det in record["detections"]:  # six (x, y) keypoints in the 600x200 original, from the checkpoint's record
        assert det["class_name"] == "person" and len(det["keypoints"]) == 6
        assert all(len(p) == 2 and 0 <= p[0] <= 600 and 0 <= p[1] <= 200 for p in det["keypoints"])
    assert (out / "wide.jpg").exists()

    cls = random_task("yolov8", "classify", classes=3)
    save_upstream_checkpoint(cls, tmp_path / "cls.pt", "ultralytics.nn.tasks", "ClassificationModel",
                             names={0: "cat", 1: "dog", 2: "fox"}, yaml={"nc": 3})
    capsys.readouterr()
    assert main(YoloTaskModel(), ["infer", "--weights", str(tmp_path / "cls.pt"), "--input-size", "64", "--source",
                                  f"{IMAGES}/street.jpg"]) == 0
    record = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert [t["class_name"] for t in record["top"]] and {t["class_name"] for t in record["top"]} == {"cat", "dog",
                                                                                                   "fox"}
    assert sum(t["score"] for t in record["top"]) == pytest.approx(1, abs=1e-4)  # one softmax, not two


def test_obb_infer_records_corners_of_their_rotated_box(tmp_path):
    out = tmp_path / "runs"
    assert main(YoloTaskModel("yolov8"), ["infer", "--task", "obb", "--num-classes", "15", "--input-size", "64",
                                          "--source", f"{IMAGES}/tiny.jpg", "--out", str(out), "--conf", "0.2",
                                          "--max-det", "4"]) == 0
    (record,) = [json.loads(line) for line in (out / "predictions.jsonl").read_text().splitlines()]
    assert record["detections"]
    for det in record["detections"]:
        r = det["rbox"]
        assert r["w"] >= r["h"] and 0 <= r["angle"] < math.pi  # regularized
        want = corners(np.array([[r["cx"], r["cy"], r["w"], r["h"], r["angle"]]]))[0]
        np.testing.assert_allclose(det["corners"], want, atol=0.02)
