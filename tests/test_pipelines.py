"""Pipelines through the shared commands (zoo.engine.pipeline), on MTCNN: the one engine file and its damage, the
ONNX export per stage against the PyTorch modules, calibrate + int8 build, and the Triton export served by a real
tritonserver against `infer`'s own records."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from _serving import free_port
from zoo.assets import asset_path
from zoo.engine.cli import main
from zoo.engine.engine_file import EngineFileError, EngineHeader, read_engine
from zoo.engine.pipeline import pack_stages, unpack_stages
from zoo.lenet.model import LeNetModel
from zoo.mtcnn.model import MTCNN, torch_networks


def run(*argv) -> int:
    return main(MTCNN(), [str(a) for a in argv])


@pytest.fixture(scope="module")
def engine(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("pipeline") / "mtcnn.engine"
    assert run("build", "-o", path, "--max-side", "320") == 0
    return path


def _header(model: str, backend: str = "reference") -> EngineHeader:
    return EngineHeader(model=model, variant=model, backend=backend, input_name="x", input_shape=[-1, 3],
                        batch=[1, 1, 1], precision="fp32", outputs=["y"])


def test_stages_pack_and_unpack_byte_for_byte():
    stages = [("a", _header("a"), b"first"), ("b", _header("b"), b""), ("c", _header("c"), b"\x00" * 7)]
    header, payload = pack_stages(_header("p"), stages)
    got = unpack_stages("p.engine", header, payload)
    assert list(got) == ["a", "b", "c"]
    assert [p for _, p in got.values()] == [b"first", b"", b"\x00" * 7]
    assert got["c"][0] == stages[2][1]
    single = _header("solo")
    assert unpack_stages("s.engine", single, b"plan") == {"solo": (single, b"plan")}


@pytest.mark.parametrize("damage,message", [
    (lambda h: h.stages.append(dict(h.stages[0])), "stage 'a'"),                        # a stage named twice
    (lambda h: h.stages[0].update(bytes=99), "its stages hold"),                        # sizes that lie
    (lambda h: h.stages[1]["header"].update(backend="tensorrt"), "names another backend"),
    (lambda h: h.stages[0].pop("header"), "a stage entry"),
])
def test_damaged_stage_lists_are_one_line(damage, message):
    header, payload = pack_stages(_header("p"), [("a", _header("a"), b"12"), ("b", _header("b"), b"345")])
    damage(header)
    with pytest.raises(EngineFileError, match=message):
        unpack_stages("p.engine", header, payload)


def test_an_engine_of_a_single_network_is_not_a_pipeline(tmp_path, capsys):
    single = tmp_path / "lenet.engine"
    assert main(LeNetModel(), ["build", "-o", str(single)]) == 0
    assert run("infer", "-e", single, "-s", asset_path("coffee")) == 2
    assert "built for model 'lenet'" in capsys.readouterr().err


def test_export_onnx_writes_each_stage_and_onnx_runtime_agrees_with_pytorch(engine, tmp_path):
    ort = pytest.importorskip("onnxruntime")
    assert run("export", "onnx", "-o", tmp_path / "onnx") == 0
    assert sorted(p.name for p in (tmp_path / "onnx").iterdir()) == ["onet.onnx", "pnet.onnx", "rnet.onnx"]
    nets = torch_networks(None)
    rng = np.random.default_rng(0)
    for stage, shape in (("pnet", (1, 3, 101, 77)), ("rnet", (3, 3, 24, 24)), ("onet", (5, 3, 48, 48))):
        session = ort.InferenceSession(str(tmp_path / "onnx" / f"{stage}.onnx"), providers=["CPUExecutionProvider"])
        x = rng.random(shape, dtype=np.float32)
        got = session.run(None, {session.get_inputs()[0].name: x})
        with torch.no_grad():
            want = nets[stage](torch.from_numpy(x))
        for g, w in zip(got, want):
            np.testing.assert_allclose(g, w.numpy(), rtol=0, atol=1e-4)


def test_calibrate_writes_one_cache_and_int8_finds_the_face(tmp_path, capsys):
    photos = tmp_path / "photos"
    photos.mkdir()
    for name in ("astronaut", "coffee"):
        (photos / asset_path(name).name).write_bytes(asset_path(name).read_bytes())
    assert run("calibrate", "--images", photos, "-o", tmp_path / "m.calib", "--max-side", "640") == 0
    names = [line.split(":")[0] for line in (tmp_path / "m.calib").read_text().splitlines()
             if not line.startswith("#")]
    assert {n.split("/")[0] for n in names} == {"pnet", "rnet", "onet"}
    assert run("build", "--precision", "int8", "--calib", tmp_path / "m.calib", "-o", tmp_path / "m8.engine",
               "--max-side", "640") == 0
    header, _ = read_engine(tmp_path / "m8.engine")
    assert [s["header"]["precision"] for s in header.stages] == ["int8"] * 3
    capsys.readouterr()
    assert run("infer", "-e", tmp_path / "m8.engine", "-s", photos / asset_path("astronaut").name) == 0
    (face,) = json.loads(capsys.readouterr().out)["faces"]
    np.testing.assert_allclose(face["box"], [181.1, 62.2, 267.7, 172.1], atol=15)  # FP32's, README


def test_export_triton_refuses_a_plan_for_a_pipeline(engine, tmp_path, capsys):
    assert run("export", "triton", "-e", engine, "-o", tmp_path / "repo", "--network", "plan") == 2
    assert "pipeline of 3 networks" in capsys.readouterr().err


def test_triton_serves_the_pipeline_as_infer_answers(engine, tmp_path, capsys):
    pytest.importorskip("tritonclient.http", reason="tritonclient[http] is not installed")
    from zoo.triton.client import client_for, infer_bytes
    from zoo.triton.server import TritonNotFound, TritonServer, find_server_site
    try:
        find_server_site()
    except TritonNotFound as e:
        pytest.skip(f"no tritonserver: {e}")
    assert run("export", "triton", "-e", engine, "-o", tmp_path / "repo") == 0
    photos = [asset_path("astronaut"), asset_path("coffee")]
    capsys.readouterr()
    assert run("infer", "-e", engine, "-s", photos[0]) == 0 and run("infer", "-e", engine, "-s", photos[1]) == 0
    want = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    server = TritonServer(tmp_path / "repo", http_port=free_port(), grpc_port=0, metrics_port=free_port(),
                          log=tmp_path / "log.txt")
    server.start(timeout=240)
    try:
        client = client_for(f"http://127.0.0.1:{server.http_port}")
        got = [infer_bytes(client, "mtcnn", p.read_bytes(), str(p)) for p in photos]
        bad = infer_bytes(client, "mtcnn", b"not an image", "bad.jpg")
        client.close()  # an open connection would hold the server's shutdown until its exit timeout
    finally:
        assert server.stop() == 0, server.log_tail()
    assert [g["faces"] for g in got] == [w["faces"] for w in want]
    assert len(got[0]["faces"]) == 1 and "error" in bad
