"""The command lines as a user runs them: build, infer, validate, bench; exit codes and one-line errors."""
import json
import subprocess
import sys

import numpy as np
import pytest
import torch

from zoo.engine.cli import main
from zoo.engine.engine_file import read_engine, read_header, write_engine
from zoo.lenet.model import LeNet5, LeNetModel
from zoo.mlp.model import MLPModel
from zoo.resnet.model import ResNetModel
from zoo.yolo.model import YoloModel

IMAGES = "tests/data/images"


def run(model, *argv):
    return main(model, [str(a) for a in argv])


def test_lenet_build_then_infer_from_engine_and_npy(tmp_path, capsys):
    engine = tmp_path / "lenet.engine"
    assert run(LeNetModel(), "build", "-o", engine, "--batch", "1:2:4") == 0
    header, _ = read_engine(engine)
    assert (header.model, header.backend, header.batch, header.input_shape) == ("lenet", "reference", [1, 2, 4],
                                                                                [-1, 1, 32, 32])
    x = np.random.default_rng(0).random((3, 1, 32, 32), dtype=np.float32)
    np.save(tmp_path / "x.npy", x)
    capsys.readouterr()
    assert run(LeNetModel(), "infer", "--engine", engine, "--source", tmp_path / "x.npy") == 0
    records = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    module = LeNetModel().random_module(None, seed=0)
    with torch.no_grad():
        expected = module(torch.from_numpy(x))
    for record, probs in zip(records, expected):
        assert record["top"][0]["class_id"] == int(probs.argmax())
        assert record["top"][0]["score"] == pytest.approx(float(probs.max()), abs=1e-5)


def test_resnet_infer_on_a_folder_writes_jsonl_and_skips_bad_images(tmp_path, capsys):
    out = tmp_path / "out"
    assert run(ResNetModel(), "infer", "--source", "tests/data/bad_images", "--out", out, "--input-size", 64,
               "--num-classes", 10) == 0
    records = [json.loads(line) for line in (out / "predictions.jsonl").read_text().splitlines()]
    assert sorted(r["file"].split("/")[-1] for r in records) == ["broken.jpg", "empty.png"]
    assert all("error" in r for r in records)
    assert run(ResNetModel(), "infer", "--source", IMAGES, "--out", out, "--input-size", 64, "--num-classes", 10,
               "--batch", 4) == 0
    records = [json.loads(line) for line in (out / "predictions.jsonl").read_text().splitlines()]
    assert len(records) == 6 and all(len(r["top"]) == 5 for r in records)


@pytest.mark.parametrize("model, flags", [(MLPModel(), []), (LeNetModel(), []),
                                          (ResNetModel(), ["--depth", "34", "--input-size", "64"])])
def test_validate_passes_and_prints_the_table(model, flags, capsys):
    assert run(model, "validate", *flags) == 0
    out = capsys.readouterr().out
    assert "layers pass (tolerance 0.0001)" in out and "max abs" in out


def test_validate_exits_1_and_marks_the_first_layer_over_tolerance(tmp_path, capsys, monkeypatch):
    """A builder that forgets LeNet's first ReLU: validate must fail at the first layer it changes."""
    import layers
    model = LeNetModel()
    original = model.define

    def broken(net, weights, config, x):
        real = layers.activation
        monkeypatch.setattr(layers, "activation", lambda net, y, kind, name, *a: y if name == "conv1/relu"
                            else real(net, y, kind, name, *a))
        try:
            return original(net, weights, config, x)
        finally:
            monkeypatch.setattr(layers, "activation", real)

    monkeypatch.setattr(model, "define", broken)
    assert run(model, "validate") == 1
    out = capsys.readouterr().out
    assert "pool1" in out and "FIRST OVER TOLERANCE" in out.split("pool1", 1)[1].splitlines()[0]


def test_validate_from_a_checkpoint_file(tmp_path, capsys):
    module = LeNet5()
    torch.save(module.state_dict(), tmp_path / "lenet.pt")
    assert run(LeNetModel(), "validate", "--weights", tmp_path / "lenet.pt") == 0


@pytest.mark.parametrize("backend, label", [("auto", "ONNX Runtime"), ("reference", "reference backend")])
def test_bench_reports_the_ratio_against_pytorch(capsys, backend, label):
    """auto runs ONNX Runtime where TensorRT is absent (onnxruntime is in the test extra)."""
    assert run(ResNetModel(), "bench", "--input-size", 64, "--iterations", 2, "--warmup", 1,
               "--compare-torch", "--backend", backend) == 0
    out = capsys.readouterr().out
    assert "ms/iter" in out and f"ratio {label} / PyTorch" in out


@pytest.mark.parametrize("argv, message", [
    (["validate", "--weights", "missing.pt"], "missing.pt: no such file"),
    (["infer", "--source", "no/such/folder"], "no/such/folder"),
    (["infer", "--source", "tests/data/images", "--engine", "missing.engine"], "missing.engine: no such engine"),
])
def test_user_errors_are_one_line_and_exit_2(argv, message, capsys):
    assert run(LeNetModel(), *argv) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert message in err[-1] and err[-1].startswith("zoo.lenet")
    assert "Traceback" not in "\n".join(err)


def test_engine_of_another_model_is_refused(tmp_path, capsys):
    engine = tmp_path / "mlp.engine"
    assert run(MLPModel(), "build", "-o", engine) == 0
    assert run(LeNetModel(), "infer", "--engine", engine, "--source", IMAGES) == 2
    assert "built for model 'mlp' (mlp), not 'lenet'" in capsys.readouterr().err


def test_tensorrt_engine_without_a_gpu_is_refused_with_the_reason(tmp_path, capsys):
    engine = tmp_path / "fake.engine"
    assert run(MLPModel(), "build", "-o", engine) == 0
    header, payload = read_engine(engine)
    header.backend, header.tensorrt_version, header.gpu = "tensorrt", "10.16.1.11", "NVIDIA H200"
    write_engine(engine, header, b"plan")
    assert run(MLPModel(), "infer", "--engine", engine, "--source", IMAGES) == 2
    assert "the TensorRT backend cannot run here" in capsys.readouterr().err


def test_a_damaged_engine_is_refused(tmp_path, capsys):
    engine = tmp_path / "bad.engine"
    engine.write_bytes(b"not an engine at all")
    assert run(MLPModel(), "infer", "--engine", engine, "--source", "x.npy") == 2
    assert "not a zoo engine file" in capsys.readouterr().err


def test_resnet_depth_mismatch_is_one_clear_line(tmp_path, capsys):
    from zoo.resnet.model import ResNet
    torch.save(ResNet(18, 4).state_dict(), tmp_path / "r18.pt")
    assert run(ResNetModel(), "validate", "--weights", tmp_path / "r18.pt", "--depth", "50") == 2
    assert "--depth 50 disagrees with" in capsys.readouterr().err


def test_weights_of_another_architecture_name_the_unused_keys(tmp_path, capsys):
    state = LeNet5().state_dict()
    state["extra.weight"] = torch.zeros(3)
    torch.save(state, tmp_path / "lenet_plus.pt")
    assert run(LeNetModel(), "build", "--weights", tmp_path / "lenet_plus.pt", "-o", tmp_path / "x.engine") == 2
    assert "not used by lenet" in capsys.readouterr().err and not (tmp_path / "x.engine").exists()


def test_yolov5_build_infer_from_wts_end_to_end(tmp_path, capsys):
    """The README pipeline in small: gen_wts, build with a dynamic batch, infer on a folder with annotated output."""
    from reference_yolov5 import random_yolov5
    torch.save({"model": random_yolov5("n", seed=0).state_dict()}, tmp_path / "y.pt")
    subprocess.run([sys.executable, "tools/gen_wts.py", "-w", tmp_path / "y.pt", "-o", tmp_path / "y.wts"],
                   check=True, capture_output=True)
    engine = tmp_path / "y.engine"
    assert run(YoloModel("yolov5"), "build", "--weights", tmp_path / "y.wts", "-o", engine, "--input-size", 192,
               "--batch", "1:2:4", "--decode", "layers") == 0
    assert read_header(engine)[0].config["decode"] == "layers"
    out = tmp_path / "out"
    assert run(YoloModel("yolov5"), "infer", "--engine", engine, "--source", IMAGES, "--out", out, "--conf", 0.3,
               "--max-det", 5) == 0
    records = [json.loads(line) for line in (out / "predictions.jsonl").read_text().splitlines()]
    assert len(records) == 6 and all("detections" in r for r in records)
    assert len(list(out.glob("*.jpg"))) == 6


def test_yolov5_input_size_not_divisible_is_refused(capsys):
    assert run(YoloModel("yolov5"), "validate", "--input-size", "300") == 2
    assert "input size 300x300 must be positive multiples of 32" in capsys.readouterr().err


def test_help_explains_every_flag():
    result = subprocess.run([sys.executable, "-m", "zoo.yolov5", "build", "--help"], capture_output=True, text=True)
    assert result.returncode == 0
    for flag in ("--weights", "--batch", "--input-size", "--decode", "--backend", "--timing-cache"):
        assert flag in result.stdout
