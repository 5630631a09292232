"""The exported repository's files (no server needed): a raw plan and its config from a TensorRT engine header, the
python network from a reference engine, clear refusals, and the context carried between ensemble steps."""
from __future__ import annotations

import dataclasses
import re

import numpy as np
import pytest

from _serving import run_cli
from zoo.engine.engine_file import EngineHeader, read_engine, write_engine
from zoo.triton import context
from zoo.triton.repository import RepositoryOptions, Sidecar, write_repository
from zoo.vision.letterbox import letterbox_params
from zoo.yolo.model import YoloModel


def yolo_header(tmp_path, backend: str, precision: str = "fp32") -> tuple[EngineHeader, bytes]:
    run_cli("yolov5", "build", "--input-size", "128", "--batch", "1:2:4", "-o", tmp_path / "y.engine")
    header, payload = read_engine(tmp_path / "y.engine")
    if backend == "tensorrt":  # what `build` writes on a TensorRT machine: the same header, a plan as payload
        header = dataclasses.replace(header, backend="tensorrt", precision=precision, tensorrt_version="10.16.0",
                                     gpu="NVIDIA H200")
        payload = b"\x00fake-serialized-plan\x01" * 10
    return header, payload


def test_plan_is_raw_and_config_comes_from_the_header(tmp_path):
    header, plan = yolo_header(tmp_path, "tensorrt", "fp16")
    engine = tmp_path / "trt.engine"
    write_engine(engine, header, plan)
    write_repository(YoloModel("yolov5"), header, engine, plan, tmp_path / "repo",
                     RepositoryOptions(name="y5", network="plan", kind="gpu", instances=2))
    folder = tmp_path / "repo" / "y5_network"
    assert (folder / "1" / "model.plan").read_bytes() == plan  # no zoo header: Triton reads TensorRT's own bytes
    assert not (folder / "1" / "model.py").exists()
    config = (folder / "config.pbtxt").read_text()
    assert 'platform: "tensorrt_plan"' in config and "max_batch_size: 4" in config
    assert re.search(r'name: "images" data_type: TYPE_FP16 dims: \[ 3, 128, 128 \]', config)
    # YOLOv5 at 128: 3 anchors on 16x16, 8x8 and 4x4 cells; 80 classes + box + objectness
    assert re.search(r'name: "model.24" data_type: TYPE_FP32 dims: \[ %d, 85 \]' % (3 * (256 + 64 + 16)), config)
    assert "preferred_batch_size: [ 2, 4 ]" in config and "instance_group [ { count: 2 kind: KIND_GPU } ]" in config
    sidecar = Sidecar.load(folder / "zoo.json")
    assert sidecar.engine_header() == header and sidecar.network == "plan"
    ensemble = (tmp_path / "repo" / "y5" / "config.pbtxt").read_text()
    assert 'platform: "ensemble"' in ensemble and ensemble.count("model_name:") == 3
    assert (tmp_path / "repo" / "y5" / "1").is_dir()


def test_reference_engine_gets_the_python_network_and_refuses_a_plan(tmp_path):
    header, payload = yolo_header(tmp_path, "reference")
    with pytest.raises(ValueError, match="--network plan needs a TensorRT engine"):
        write_repository(YoloModel("yolov5"), header, tmp_path / "y.engine", payload, tmp_path / "repo",
                         RepositoryOptions(name="y5", network="plan"))
    assert not (tmp_path / "repo" / "y5_network").exists()  # nothing half-written
    run_cli("yolov5", "export", "triton", "--engine", tmp_path / "y.engine", "-o", tmp_path / "repo", "--conf", 0.5)
    network = tmp_path / "repo" / "yolov5_network"
    assert read_engine(network / "1" / "model.engine") == (header, payload)
    assert 'backend: "python"' in (network / "config.pbtxt").read_text()
    assert Sidecar.load(tmp_path / "repo" / "yolov5_postprocess" / "zoo.json").options["conf"] == 0.5


def test_export_plan_flag_on_reference_engine_is_one_line(tmp_path, capsys):
    run_cli("yolov5", "build", "--input-size", "64", "--batch", "1", "-o", tmp_path / "y.engine")
    from zoo.engine.cli import main
    code = main(YoloModel("yolov5"), ["export", "triton", "--engine", str(tmp_path / "y.engine"), "-o",
                                str(tmp_path / "repo"), "--network", "plan"])
    assert code == 2
    assert "needs a TensorRT engine" in capsys.readouterr().err.strip().splitlines()[-1]


def test_context_round_trip_keeps_geometry_and_drops_pixels():
    image = np.zeros((37, 91, 3), np.uint8)
    original = {"file": "a.jpg", "image": image, "letterbox": letterbox_params((37, 91), (64, 64))}
    restored = context.loads(context.dumps(original))
    assert restored["file"] == "a.jpg" and restored["letterbox"] == original["letterbox"]
    assert restored["image"].shape == image.shape and restored["image"].strides == (0, 0, 0)


def test_context_refuses_classes_outside_the_zoo():
    with pytest.raises(ValueError, match="outside the zoo"):
        context.loads('{"x": {"__dataclass__": "subprocess:Popen", "fields": {"args": "true"}}}')
