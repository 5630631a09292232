"""A real tritonserver (from the nvidia-pytriton wheel) on an exported repository: YOLOv5n and ResNet-18 ensembles.

The answers are compared with `infer`'s records for the same images (the independent path: files, the local
engine, the same model code without Triton). Skips with the reason where the server environment is missing; CI has
it (`make setup` makes .venv-triton).
"""
from __future__ import annotations

import json
import threading
import urllib.request
from concurrent.futures import ThreadPoolExecutor

import pytest

from _serving import IMAGES, assert_same_record, free_port, infer_records, run_cli

pytest.importorskip("tritonclient.http", reason="tritonclient[http] is not installed")
from zoo.triton.client import client_for, infer_bytes  # noqa: E402
from zoo.triton.server import TritonNotFound, TritonServer, find_server_site  # noqa: E402

try:
    find_server_site()
    MISSING = None
except TritonNotFound as e:
    MISSING = str(e)

pytestmark = pytest.mark.skipif(MISSING is not None, reason=f"no tritonserver: {MISSING}")


@pytest.fixture(scope="module")
def served(tmp_path_factory):
    """A repository with both ensembles (the python network on the reference backend), served on loopback."""
    tmp = tmp_path_factory.mktemp("triton")
    run_cli("yolov5", "build", "--input-size", "128", "--batch", "1:4:8", "-o", tmp / "y5n.engine")
    run_cli("resnet", "build", "--depth", "18", "--input-size", "64", "--num-classes", "10", "--batch", "1:2:4",
            "-o", tmp / "r18.engine")
    repo = tmp / "model_repository"
    run_cli("yolov5", "export", "triton", "--engine", tmp / "y5n.engine", "-o", repo, "--network", "python",
            "--max-queue-delay-us", "20000")
    run_cli("resnet", "export", "triton", "--engine", tmp / "r18.engine", "-o", repo, "--name", "r18")
    expected = {"yolov5": infer_records("yolov5", tmp / "y5n.engine", tmp / "infer-y5"),
                "r18": infer_records("resnet", tmp / "r18.engine", tmp / "infer-r18")}
    server = TritonServer(repo, http_port=free_port(), grpc_port=0, metrics_port=free_port(), log=tmp / "log.txt")
    server.start(timeout=240)
    try:
        yield server, expected
    finally:
        assert server.stop() == 0, server.log_tail()


def test_detections_equal_infer_from_threads(served):
    server, expected = served
    jobs = [path for path in sorted(IMAGES.iterdir()) for _ in range(2)]  # 12 requests from 6 threads
    barrier = threading.Barrier(6)

    def send(path):
        if jobs.index(path) < 6:
            barrier.wait(timeout=30)
        return path.name, infer_bytes(client_for(server.url), "yolov5", path.read_bytes(), path.name)

    with ThreadPoolExecutor(6) as pool:
        answers = list(pool.map(send, jobs))
    assert len(answers) == 12
    for name, record in answers:
        assert record["file"] == name
        assert_same_record(record, expected["yolov5"][name])
    assert any(record["detections"] for _, record in answers)  # random weights still find boxes here


def test_dynamic_batching_formed_batches(served):
    server, _ = served
    data = (IMAGES / "street.jpg").read_bytes()
    with ThreadPoolExecutor(6) as pool:
        list(pool.map(lambda _: infer_bytes(client_for(server.url), "yolov5", data, "x"), range(12)))
    with urllib.request.urlopen(f"{server.url}/v2/models/yolov5_network/stats", timeout=10) as response:
        stats = json.load(response)["model_stats"][0]
    # each execution ran a batch; more inferences than executions means some batch held several requests
    assert stats["inference_count"] > stats["execution_count"] > 0, stats
    with urllib.request.urlopen(server.metrics_url, timeout=10) as response:
        metrics = response.read().decode()
    assert 'nv_inference_exec_count{model="yolov5_network"' in metrics


def test_bad_image_is_an_error_and_the_model_lives(served):
    server, expected = served
    client = client_for(server.url)
    bad = infer_bytes(client, "yolov5", b"\xff\xd8 not really a jpeg", "bad.jpg")
    assert "not a decodable image" in bad["error"] and bad["file"] == "bad.jpg"
    empty = infer_bytes(client, "yolov5", b"", "empty.jpg")
    assert "empty image" in empty["error"]
    good = infer_bytes(client, "yolov5", (IMAGES / "wide.jpg").read_bytes(), "wide.jpg")
    assert_same_record(good, expected["yolov5"]["wide.jpg"])


def test_classifier_ensemble_gives_infer_top_classes(served):
    server, expected = served
    client = client_for(server.url)
    for name in ("square.jpg", "portrait.jpg"):
        assert_same_record(infer_bytes(client, "r18", (IMAGES / name).read_bytes(), name), expected["r18"][name])


def test_infer_command_with_triton_writes_infer_records(served, tmp_path):
    server, expected = served
    run_cli("yolov5", "infer", "--triton", server.url, "--source", IMAGES, "--out", tmp_path)
    got = [json.loads(line) for line in (tmp_path / "predictions.jsonl").read_text().splitlines()]
    assert [r["file"] for r in got] == [str(p) for p in sorted(IMAGES.iterdir())]
    for record in got:
        assert_same_record(record, expected["yolov5"][record["file"].rsplit("/", 1)[-1]])
    assert (tmp_path / "street.jpg").is_file()  # annotated from the records
