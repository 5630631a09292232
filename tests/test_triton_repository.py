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


# ---------------------------------------------------------------------------------------------------------------
# hostile names and folders, what Triton could not serve (issue 17)

def triton_config(path):
    """config.pbtxt parsed by Triton's own schema (tritonclient's model_config_pb2, loaded by path: its package
    import wants grpc): the independent reader of what the export writes."""
    import importlib.util
    from pathlib import Path

    from google.protobuf import text_format
    import tritonclient
    source = Path(tritonclient.__file__).parent / "grpc" / "model_config_pb2.py"
    if not source.is_file():
        pytest.skip("tritonclient has no model_config_pb2")
    spec = importlib.util.spec_from_file_location("zoo_test_model_config_pb2", source)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return text_format.Parse(path.read_text(), module.ModelConfig())


def export_main(tmp_path, *argv):
    from zoo.engine.cli import main
    return main(YoloModel("yolov5"), ["export", "triton", "--engine", str(tmp_path / "y.engine"), *map(str, argv)])


@pytest.fixture
def small_engine(tmp_path):
    run_cli("yolov5", "build", "--input-size", "64", "--batch", "1:2:4", "-o", tmp_path / "y.engine")
    return tmp_path / "y.engine"


@pytest.mark.parametrize("name", ["../victim", "ABSOLUTE", "a/b", "..", ".hidden", 'y"5', "y\n5", "", "x" * 101])
def test_name_is_a_model_name_never_a_path(tmp_path, small_engine, capsys, name):
    victim = tmp_path / "t" / "victim"
    victim.mkdir(parents=True)
    (victim / "precious.txt").write_text("keep")
    name = str(victim) if name == "ABSOLUTE" else name
    code = export_main(tmp_path, "-o", tmp_path / "t" / "repo", "--name", name)
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(err) == 1 and "--name" in err[0] and "never a path" in err[0]
    assert (victim / "precious.txt").read_text() == "keep"
    assert sorted(p.name for p in (tmp_path / "t").iterdir()) == ["victim"]  # nothing written anywhere


def test_names_with_dots_and_dashes_are_valid_config_strings(tmp_path, small_engine):
    assert export_main(tmp_path, "-o", tmp_path / "repo", "--name", "y5-n.v1") == 0
    for folder in ("y5-n.v1", "y5-n.v1_preprocess", "y5-n.v1_network", "y5-n.v1_postprocess"):
        assert triton_config(tmp_path / "repo" / folder / "config.pbtxt").name == folder


def test_quotes_in_tensor_names_do_not_break_the_config(tmp_path):
    header, plan = yolo_header(tmp_path, "tensorrt", "fp16")
    header = dataclasses.replace(header, input_name='im"ag\\es\n')
    write_repository(YoloModel("yolov5"), header, None, plan, tmp_path / "repo",
                     RepositoryOptions(name="y5", network="plan", kind="gpu"))
    config = triton_config(tmp_path / "repo" / "y5_network" / "config.pbtxt")
    assert config.input[0].name == 'im"ag\\es\n' and config.platform == "tensorrt_plan"
    ensemble = triton_config(tmp_path / "repo" / "y5" / "config.pbtxt")
    maps = ensemble.ensemble_scheduling.step[1].input_map
    assert dict(maps) == {'im"ag\\es\n': "network_input"}


def test_a_folder_the_zoo_did_not_write_is_refused_and_kept(tmp_path, small_engine, capsys):
    notes = tmp_path / "repo" / "yolov5" / "my_notes.txt"
    notes.parent.mkdir(parents=True)
    notes.write_text("mine")
    code = export_main(tmp_path, "-o", tmp_path / "repo")
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(err) == 1 and "yolov5" in err[0] and "not an earlier `export triton`" in err[0]
    assert notes.read_text() == "mine"
    assert sorted(p.name for p in (tmp_path / "repo").iterdir()) == ["yolov5"]  # no step written beside it


@pytest.mark.parametrize("extra", ["1/weights.bin", "notes.txt", "1/__pycache__/x.txt"])
def test_an_earlier_export_with_foreign_files_is_refused(tmp_path, small_engine, extra):
    assert export_main(tmp_path, "-o", tmp_path / "repo") == 0
    (tmp_path / "repo" / "yolov5_network" / extra).parent.mkdir(parents=True, exist_ok=True)
    (tmp_path / "repo" / "yolov5_network" / extra).write_text("user data")
    assert export_main(tmp_path, "-o", tmp_path / "repo", "--conf", 0.7) == 2
    assert (tmp_path / "repo" / "yolov5_network" / extra).read_text() == "user data"
    assert Sidecar.load(tmp_path / "repo" / "yolov5_postprocess" / "zoo.json").options["conf"] != 0.7


def test_a_linked_folder_is_refused(tmp_path, small_engine):
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    (tmp_path / "repo").mkdir()
    (tmp_path / "repo" / "yolov5_network").symlink_to(elsewhere)
    assert export_main(tmp_path, "-o", tmp_path / "repo") == 2
    assert (tmp_path / "repo" / "yolov5_network").is_symlink() and list(elsewhere.iterdir()) == []


def test_an_earlier_export_is_replaced(tmp_path, small_engine):
    assert export_main(tmp_path, "-o", tmp_path / "repo") == 0
    # what the python backend leaves after loading model.py is still the zoo's
    cache = tmp_path / "repo" / "yolov5_network" / "1" / "__pycache__"
    cache.mkdir()
    (cache / "model.cpython-311.pyc").write_bytes(b"\0")
    assert export_main(tmp_path, "-o", tmp_path / "repo", "--conf", 0.7) == 0
    assert Sidecar.load(tmp_path / "repo" / "yolov5_postprocess" / "zoo.json").options["conf"] == 0.7
    assert not cache.exists()
    assert sorted(p.name for p in (tmp_path / "repo").iterdir()) == [
        "yolov5", "yolov5_network", "yolov5_postprocess", "yolov5_preprocess"]  # no staging left behind


def test_a_plan_on_cpu_instances_is_refused(tmp_path):
    header, plan = yolo_header(tmp_path, "tensorrt", "fp16")
    with pytest.raises(ValueError, match="--kind cpu: a TensorRT plan runs on the GPU only"):
        write_repository(YoloModel("yolov5"), header, None, plan, tmp_path / "repo",
                         RepositoryOptions(name="y5", network="plan", kind="cpu"))
    assert not (tmp_path / "repo").exists()


@pytest.mark.parametrize("network", ["plan", "python"])
def test_an_engine_that_cannot_take_batch_1_is_refused(tmp_path, network):
    header, plan = yolo_header(tmp_path, "tensorrt", "fp16")
    header = dataclasses.replace(header, batch=[2, 2, 4])
    with pytest.raises(ValueError, match="smallest batch is 2, but Triton sends batches from 1"):
        write_repository(YoloModel("yolov5"), header, None, plan, tmp_path / "repo",
                         RepositoryOptions(name="y5", network=network, kind="gpu"))


@pytest.mark.parametrize("precision", ["fp32", "fp16", "int8"])
def test_the_plan_input_has_the_network_input_type(tmp_path, precision):
    """The declared type is the type of the input the network defines for that precision (INT8 networks take FP16
    between their Q/DQ pairs, like FP16 ones), read back through Triton's schema."""
    from zoo.trt_api import trt
    from zoo.engine.backends import ReferenceBackend
    from layers.precision import Precision
    header, plan = yolo_header(tmp_path, "tensorrt", precision)
    write_repository(YoloModel("yolov5"), header, None, plan, tmp_path / "repo",
                     RepositoryOptions(name="y5", network="plan", kind="gpu"))
    net = ReferenceBackend().create_network()
    defined = net.add_input("x", Precision(precision).dtype, (-1, 3, 8, 8)).dtype
    want = {trt.float32: "TYPE_FP32", trt.float16: "TYPE_FP16"}[defined]
    config = triton_config(tmp_path / "repo" / "y5_network" / "config.pbtxt")
    assert config.input[0].data_type == type(config).DESCRIPTOR.fields_by_name["input"].message_type.fields_by_name[
        "data_type"].enum_type.values_by_name[want].number


def test_default_network_is_what_this_machine_s_triton_loads(tmp_path, monkeypatch):
    from zoo.export import triton as export
    from zoo.triton import server
    monkeypatch.setattr(export, "NVIDIA_TENSORRT_BACKEND", tmp_path / "absent")
    assert export.default_network("tensorrt") == "python"  # only the bundled server (or none): python backend
    monkeypatch.setattr(export, "NVIDIA_TENSORRT_BACKEND", tmp_path)
    monkeypatch.setattr(server, "find_server_site", lambda *a: (_ for _ in ()).throw(server.TritonNotFound("no")))
    assert export.default_network("tensorrt") == "plan"  # NVIDIA's image: its TensorRT backend loads the plan
    assert export.default_network("reference") == "python"
    monkeypatch.setattr(server, "find_server_site", lambda *a: tmp_path)
    assert export.default_network("tensorrt") == "python"  # the bundled server is the one `zoo.triton serve` runs


def test_the_bundled_server_refuses_a_plan_repository_in_one_line(tmp_path):
    from zoo.triton.server import TritonNotFound, check_backends
    header, plan = yolo_header(tmp_path, "tensorrt", "fp16")
    write_repository(YoloModel("yolov5"), header, None, plan, tmp_path / "repo",
                     RepositoryOptions(name="y5", network="plan", kind="gpu"))
    with pytest.raises(TritonNotFound, match="y5_network: a TensorRT plan model") as e:
        check_backends(tmp_path / "repo")
    assert "\n" not in str(e.value)
    write_repository(YoloModel("yolov5"), header, None, plan, tmp_path / "repo2", RepositoryOptions(name="y5"))
    check_backends(tmp_path / "repo2")  # the python network: loadable


def test_an_older_exports_ensemble_without_zoo_json_is_still_replaced(tmp_path, small_engine):
    assert export_main(tmp_path, "-o", tmp_path / "repo") == 0
    (tmp_path / "repo" / "yolov5" / "zoo.json").unlink()  # what exports wrote before issue 17
    assert export_main(tmp_path, "-o", tmp_path / "repo", "--conf", 0.7) == 0
    (tmp_path / "repo" / "yolov5" / "zoo.json").unlink()
    (tmp_path / "repo" / "yolov5" / "config.pbtxt").write_text("my own model")
    assert export_main(tmp_path, "-o", tmp_path / "repo") == 2
    assert (tmp_path / "repo" / "yolov5" / "config.pbtxt").read_text() == "my own model"
