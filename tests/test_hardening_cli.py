"""Careless command lines and damaged engines: every flag range-checked in one line, engines whose profile, version
or payload is wrong refused naming the file, and no silent results (.npy inputs, NaN, links)."""
from __future__ import annotations

import json
import struct

import numpy as np
import pytest
import torch

from zoo.engine.cli import main, make_parser
from zoo.engine.engine_file import MAGIC, compatible_version, read_header
from zoo.engine.flags import bounded
from zoo.lenet.model import LeNetModel
from zoo.mlp.model import MLPModel
from zoo.registry import families
from zoo.resnet.model import ResNetModel
from zoo.vision.nms import batched_nms
from zoo.yolov5.zoo_model import YoloV5Model

IMAGES = "tests/data/images"


def run(model, *argv):
    return main(model, [str(a) for a in argv])


def one_error_line(capsys) -> str:
    """The error line (progress lines go to stderr too): exactly one, and the last."""
    err = capsys.readouterr().err.strip().splitlines()
    errors = [line for line in err if "error:" in line]
    assert len(errors) == 1 and err[-1] == errors[0], err
    return errors[0]


@pytest.mark.parametrize("model, argv, flag, value", [
    (YoloV5Model(), ["infer", "--source", IMAGES, "--conf", "-1"], "--conf", "-1"),
    (YoloV5Model(), ["infer", "--source", IMAGES, "--conf", "2"], "--conf", "2"),
    (YoloV5Model(), ["infer", "--source", IMAGES, "--conf", "nan"], "--conf", "nan"),
    (YoloV5Model(), ["infer", "--source", IMAGES, "--iou", "1.5"], "--iou", "1.5"),
    (YoloV5Model(), ["infer", "--source", IMAGES, "--max-det", "-1"], "--max-det", "-1"),
    (YoloV5Model(), ["infer", "--source", IMAGES, "--input-size", "0"], "--input-size", "0"),
    (YoloV5Model(), ["infer", "--source", IMAGES, "--batch", "-1"], "--batch", "-1"),
    (YoloV5Model(), ["bench", "--iterations", "0"], "--iterations", "0"),
    (YoloV5Model(), ["build", "-o", "x.engine", "--batch", "4:2:8"], "--batch", "4:2:8"),
    (YoloV5Model(), ["build", "-o", "x.engine", "--workspace", "-2"], "--workspace", "-2"),
    (ResNetModel(), ["validate", "--input-size", "0"], "--input-size", "0"),
    (LeNetModel(), ["calibrate", "--images", IMAGES, "-o", "c", "--percentile", "101"], "--percentile", "101"),
    (LeNetModel(), ["validate", "--tolerance", "inf"], "--tolerance", "inf"),
])
def test_every_bad_flag_value_is_one_line_naming_flag_value_and_range(model, argv, flag, value, capsys):
    with pytest.raises(SystemExit) as exit_:
        main(model, argv)
    assert exit_.value.code == 2
    line = one_error_line(capsys)
    assert flag in line and value in line and ("allowed" in line or "MIN <= OPT <= MAX" in line), line


def test_bounded_checks_both_ends_and_open_intervals():
    import argparse
    parse = bounded(float, 0, 1, lo_open=True)
    assert parse("1") == 1.0 and parse("0.5") == 0.5
    for bad in ("0", "1.0001", "x", "-inf"):
        with pytest.raises(argparse.ArgumentTypeError):
            parse(bad)
    assert bounded(int, 1)("7") == 7
    with pytest.raises(argparse.ArgumentTypeError, match="allowed: >= 1"):
        bounded(int, 1)("0")


def test_classes_beyond_the_class_count_is_an_error():
    """infer calls this once the engine's configuration is known (a unit check: no network is built here)."""
    from zoo.engine.errors import UserError
    args = type("A", (), {"classes": [0, 999]})()
    with pytest.raises(UserError, match=r"--classes: 999 is out of range \(the model has 80 classes: allowed 0..79\)"):
        YoloV5Model().check_infer_arguments(args, {"num_classes": 80})
    args.classes = [0, 79]
    YoloV5Model().check_infer_arguments(args, {"num_classes": 80})


def test_a_flag_that_disagrees_with_the_weights_is_an_error(tmp_path, capsys):
    import wts
    args = type("A", (), {"variant": "n", "num_classes": 3})()
    module = YoloV5Model().random_module(args, seed=0)
    wts.save(tmp_path / "n3.wts", {k: v.numpy() for k, v in module.state_dict().items()})
    assert run(YoloV5Model(), "validate", "--weights", tmp_path / "n3.wts", "--variant", "s", "--input-size", 64) == 2
    assert "--variant s disagrees with" in one_error_line(capsys)
    assert run(YoloV5Model(), "validate", "--weights", tmp_path / "n3.wts", "--num-classes", 80,
               "--input-size", 64) == 2
    assert "--num-classes 80 disagrees with" in one_error_line(capsys)


def test_yolov5_infer_on_a_npy_gives_the_reference_modules_detections(tmp_path, capsys):
    """The network runs on the reference backend; the expected boxes come from the PyTorch module, through the
    same NMS."""
    model = YoloV5Model()
    x = np.random.default_rng(1).random((2, 3, 64, 64), dtype=np.float32)
    np.save(tmp_path / "x.npy", x)
    assert run(model, "infer", "--source", tmp_path / "x.npy", "--input-size", 64, "--conf", 0.01) == 0
    records = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    module = model.random_module(type("A", (), {"variant": None, "num_classes": None})(), seed=0)
    with torch.no_grad():
        prediction = module(torch.from_numpy(x))
    prediction = prediction[0] if isinstance(prediction, (tuple, list)) else prediction
    expected = batched_nms(prediction, 0.01, 0.45, None, False, 1000)
    assert [r["index"] for r in records] == [0, 1]
    for record, dets in zip(records, expected):
        assert len(record["detections"]) == len(dets) > 0
        got = np.array([d["box"] + [d["score"]] for d in record["detections"]])
        np.testing.assert_allclose(got[:, :4], dets[:, :4].numpy(), atol=0.02)
        np.testing.assert_allclose(got[:, 4], dets[:, 4].numpy(), atol=2e-5)


def test_the_batch_profile_is_enforced_on_the_reference_backend(tmp_path, capsys):
    engine = tmp_path / "lenet.engine"
    assert run(LeNetModel(), "build", "-o", engine, "--batch", "1:1:2") == 0
    np.save(tmp_path / "x8.npy", np.zeros((8, 1, 32, 32), np.float32))
    np.save(tmp_path / "x2.npy", np.zeros((2, 1, 32, 32), np.float32))
    capsys.readouterr()
    assert run(LeNetModel(), "infer", "--engine", engine, "--source", tmp_path / "x8.npy") == 2
    assert "batch 8 is outside the engine's profile 1..2" in one_error_line(capsys)
    assert run(LeNetModel(), "infer", "--engine", engine, "--source", IMAGES, "--batch", 4) == 2
    assert "outside the engine's profile 1..2" in one_error_line(capsys)
    assert run(LeNetModel(), "infer", "--engine", engine, "--source", tmp_path / "x2.npy") == 0
    # the runner itself refuses, as TensorRT's set_input_shape does
    from zoo.engine.engines import open_engine
    _, runner, _ = open_engine(LeNetModel(), engine)
    with pytest.raises(ValueError, match="batch 3, outside the engine's optimization profile 1..2"):
        runner.run({"input": np.zeros((3, 1, 32, 32), np.float32)})


def test_nan_inputs_give_strict_json(tmp_path, capsys):
    x = np.full((1, 1, 32, 32), np.nan, np.float32)
    np.save(tmp_path / "nan.npy", x)
    assert run(LeNetModel(), "infer", "--source", tmp_path / "nan.npy") == 0
    out = capsys.readouterr().out

    def refuse(token):
        raise AssertionError(f"invalid JSON token {token}")
    record = json.loads(out, parse_constant=refuse)
    assert record["top"][0]["score"] is None


@pytest.mark.parametrize("array, what", [(np.ones((1, 1, 32, 32), np.complex64), "complex"),
                                         (np.array([{"a": 1}], dtype=object), "object")])
def test_complex_and_object_npy_are_refused_naming_the_file(tmp_path, capsys, array, what):
    np.save(tmp_path / "bad.npy", array, allow_pickle=True)
    assert run(LeNetModel(), "infer", "--source", tmp_path / "bad.npy") == 2
    line = one_error_line(capsys)
    assert "bad.npy" in line and (what in line or "pickle" in line), line


def test_dangling_links_and_link_loops_are_reported_like_unreadable_images(tmp_path, capsys):
    folder = tmp_path / "images"
    folder.mkdir()
    (folder / "ok.jpg").write_bytes(open(f"{IMAGES}/tiny.jpg", "rb").read())
    (folder / "dangling.jpg").symlink_to(tmp_path / "nowhere.jpg")
    (folder / "loop.jpg").symlink_to(folder / "loop.jpg")
    assert run(ResNetModel(), "infer", "--source", folder, "--input-size", 64, "--num-classes", 10) == 0
    records = {json.loads(line)["file"].split("/")[-1]: json.loads(line)
               for line in capsys.readouterr().out.splitlines()}
    assert sorted(records) == ["dangling.jpg", "loop.jpg", "ok.jpg"]
    assert "dangling link" in records["dangling.jpg"]["error"]
    assert "symbolic links" in records["loop.jpg"]["error"]
    assert "top" in records["ok.jpg"]


# ------------------------------------------------------------------------------------------------ engine files


@pytest.fixture
def mlp_engine(tmp_path):
    engine = tmp_path / "mlp.engine"
    assert run(MLPModel(), "build", "-o", engine) == 0
    return engine


def _rewrite_header(path, **changes):
    header, offset = read_header(path)
    payload = path.read_bytes()[offset:]
    fields = {**header.__dict__, **changes}
    head = json.dumps(fields).encode()
    path.write_bytes(MAGIC + struct.pack("<Q", len(head)) + head + payload)


def test_zoo_version_compatibility_is_defined_and_checked(mlp_engine, capsys):
    assert compatible_version("0.1.0") and not compatible_version("0.0.9") and not compatible_version("0.2.0")
    assert not compatible_version("99.0.0") and not compatible_version("x") and not compatible_version("1")
    _rewrite_header(mlp_engine, zoo_version="99.0.0")
    assert run(MLPModel(), "infer", "--engine", mlp_engine, "--source", IMAGES) == 2
    line = one_error_line(capsys)
    assert "mlp.engine: written by zoo 99.0.0" in line


def test_a_damaged_payload_names_the_engine_file(mlp_engine, capsys):
    data = bytearray(mlp_engine.read_bytes())
    header_end = read_header(mlp_engine)[1]
    for i in range(header_end + 100, len(data) - 30):  # the zip's contents, not just its directory
        data[i] ^= 0x5A
    mlp_engine.write_bytes(bytes(data))
    np.save(mlp_engine.parent / "x.npy", np.ones((1, 1, 1, 1), np.float32))
    assert run(MLPModel(), "infer", "--engine", mlp_engine, "--source", mlp_engine.parent / "x.npy") == 2
    assert "mlp.engine: damaged engine payload" in one_error_line(capsys)


def test_a_huge_header_length_names_the_engine_file(mlp_engine, capsys):
    data = mlp_engine.read_bytes()
    mlp_engine.write_bytes(MAGIC + struct.pack("<Q", 1 << 60) + data[len(MAGIC) + 8:])
    assert run(MLPModel(), "infer", "--engine", mlp_engine, "--source", IMAGES) == 2
    assert "mlp.engine: damaged engine file (header length" in one_error_line(capsys)


def test_a_lying_header_names_the_engine_file(mlp_engine, capsys):
    _rewrite_header(mlp_engine, outputs=["model.33"])
    assert run(MLPModel(), "infer", "--engine", mlp_engine, "--source", IMAGES) == 2
    line = one_error_line(capsys)
    assert "mlp.engine: the header names outputs ['model.33']" in line


def test_an_engine_with_the_wrong_magic_is_refused_even_when_long_enough(mlp_engine, capsys):
    data = mlp_engine.read_bytes()
    mlp_engine.write_bytes(b"ZOO-ENGINX 1\n" + data[len(MAGIC):])
    assert run(MLPModel(), "infer", "--engine", mlp_engine, "--source", IMAGES) == 2
    assert "mlp.engine: not a zoo engine file" in one_error_line(capsys)


def test_long_values_are_cut_in_error_lines(tmp_path, capsys):
    assert run(MLPModel(), "build", "--weights", tmp_path / ("w" * 5000 + ".pt"), "-o", tmp_path / "x.engine") == 2
    assert len(one_error_line(capsys)) < 700


def test_resnet_num_classes_that_disagrees_with_the_weights_is_an_error(tmp_path, capsys):
    from zoo.resnet.model import ResNet
    torch.save(ResNet(18, 4).state_dict(), tmp_path / "r18.pt")
    assert run(ResNetModel(), "validate", "--weights", tmp_path / "r18.pt", "--num-classes", 10,
               "--input-size", 64) == 2
    assert "--num-classes 10 disagrees with" in one_error_line(capsys)


@pytest.mark.parametrize("family", families(), ids=lambda f: f.name)
def test_every_family_range_checks_its_size_and_class_flags(family, capsys):
    """Whatever a family declares, --num-classes and --input-size out of range are one line naming flag and range."""
    model = family.load()
    parser = make_parser(model)
    flags = {option for action in parser._subparsers._group_actions[0].choices["validate"]._actions
             for option in action.option_strings}
    checked = [f for f in ("--num-classes", "--input-size") if f in flags]
    if not checked:
        pytest.skip(f"{family.name} has neither flag")
    for flag in checked:
        with pytest.raises(SystemExit) as exit_info:
            parser.parse_args(["validate", flag, "0"])
        assert exit_info.value.code == 2
        line = one_error_line(capsys)
        assert flag in line and "0" in line and "allowed" in line, line
