"""MTCNN: its ops on the reference backend, the three trained networks layer by layer, the crops, the NMS modes, and
the whole cascade on real photographs against a pure PyTorch cascade; the CLI's outputs and its one-line errors."""
from __future__ import annotations

import json
import shutil

import cv2
import numpy as np
import pytest
import torch
import torch.nn.functional as F

import layers
from wts.weight_map import WeightMap
from zoo.assets import asset_path
from zoo.trt_api import trt
from zoo.engine.backends import ReferenceBackend
from zoo.engine.cli import main as zoo_main
from zoo.engine.commands.validate import validate_stage
from zoo.engine.engine_file import read_engine, write_engine
from layers.precision import Precision
from zoo.engine.reference.network import NetworkError
from zoo.engine.engines import build_engine, load_stages
from zoo.mtcnn import nets
from zoo.mtcnn.model import MTCNN, make_cascade, torch_networks
from zoo.mtcnn.resample import AreaSampler, crop_resize_reference
from zoo.mtcnn.torch_cascade import detect_faces
from zoo.vision.nms import nms_indices


def main(argv: list[str]) -> int:
    """`python -m zoo.mtcnn ARGS`: MTCNN through the shared commands."""
    return zoo_main(MTCNN(), argv)


def in_memory(backend, *argv: str) -> dict:
    """The three stages built in memory as `build` builds them (flags of build in `argv`)."""
    args = _parser_args("build", "-o", "unused.engine", *argv)
    header, payload, _ = build_engine(MTCNN(), args, backend)
    return load_stages(header, payload, backend)


def _parser_args(*argv: str):
    from zoo.engine.cli import make_parser
    return make_parser(MTCNN()).parse_args(list(argv))


def validate_network(stage: str, backend, tolerance: float):
    """(table, ok) of one network layer by layer, as `validate` prints it."""
    from zoo.engine import validate as validation
    stages = {s.name: s for s in MTCNN().load_stages(_parser_args("validate"))}
    network = stages[stage].network
    x = network.sample_input(stages[stage].config, 1)
    rows = validate_stage(stages[stage], backend, Precision("fp32"), x, tolerance, None)
    return validation.format_table(rows, f"tolerance {tolerance:g}"), all(r.ok for r in rows)


def _rgb(name: str) -> np.ndarray:
    return cv2.cvtColor(cv2.imread(str(asset_path(name))), cv2.COLOR_BGR2RGB)


# ----------------------------------------------------------------------------------------------------------------
# the ops MTCNN adds to the reference backend


@pytest.mark.parametrize("shape", [(2, 5, 7, 9), (3, 6)])
def test_prelu_layer_matches_torch(shape):
    x = torch.randn(shape)
    slopes = torch.randn(shape[1])
    weights = WeightMap({"p.weight": slopes.numpy()})
    net = ReferenceBackend().create_network()
    inp = net.add_input("x", trt.float32, (-1, *shape[1:]))
    net.mark_output(layers.prelu(net, weights, "p", inp))
    got = ReferenceBackend().runner_for(net).run({"x": x.numpy()})["p"]
    torch.testing.assert_close(got, F.prelu(x, slopes), rtol=0, atol=0)


def test_prelu_slopes_must_broadcast_into_the_input():
    net = ReferenceBackend().create_network()
    x = net.add_input("x", trt.float32, (1, 4, 5, 5))
    slopes = net.add_constant((1, 3, 1, 1), np.ones((1, 3, 1, 1), np.float32)).get_output(0)
    net.mark_output(net.add_parametric_relu(x, slopes).get_output(0))
    with pytest.raises(NetworkError, match=r"slopes of shape \(1, 3, 1, 1\) do not broadcast"):
        ReferenceBackend().runner_for(net)


@pytest.mark.parametrize("window,stride,size", [(2, 2, (11, 16)), (3, 2, (22, 23)), (3, 2, (9, 10)), (2, 2, (3, 5))])
def test_ceil_mode_max_pool_on_dynamic_sizes(window, stride, size):
    # one network with a dynamic height and width, run at the size given: EXPLICIT_ROUND_UP = torch's ceil_mode
    net = ReferenceBackend().create_network()
    inp = net.add_input("x", trt.float32, (1, 2, -1, -1))
    out = layers.max_pool(net, inp, "pool", window, stride, ceil_mode=True)
    assert tuple(out.shape) == (1, 2, -1, -1)
    net.mark_output(out)
    x = torch.randn(1, 2, *size)
    got = ReferenceBackend().runner_for(net).run({"x": x.numpy()})["pool"]
    torch.testing.assert_close(got, F.max_pool2d(x, window, stride, ceil_mode=True), rtol=0, atol=0)


# ----------------------------------------------------------------------------------------------------------------
# the trained networks, layer by layer


@pytest.mark.parametrize("stage", nets.STAGES)
def test_each_trained_network_validates_layer_by_layer(stage):
    table, ok = validate_network(stage, ReferenceBackend(), 1e-4)
    assert ok, table
    assert "softmax" in table and ("dense" in table or stage == "pnet")


def test_validate_catches_a_missing_permute(monkeypatch):
    # without the permute to (N, W, H, C), dense4 meets its 576 inputs in another order: the first layer over
    # tolerance is dense4, while every convolution before it still passes
    monkeypatch.setattr(nets.layers, "transpose", lambda net, x, perm, name: x)
    table, ok = validate_network("rnet", ReferenceBackend(), 1e-4)
    assert not ok
    first_bad = next(line for line in table.splitlines() if "FIRST OVER TOLERANCE" in line)
    assert first_bad.startswith("dense4 "), table


# ----------------------------------------------------------------------------------------------------------------
# crops and NMS


def test_area_crops_match_the_cpu_reference():
    rng = np.random.default_rng(1)
    image = rng.integers(0, 256, (37, 53, 3), dtype=np.uint8)
    regions = [[0, 37, 0, 53], [3, 30, 5, 20], [10, 13, 7, 9], [0, 1, 0, 1], [20, 37, 40, 53]]  # down, up, 1x1
    sampler = AreaSampler(torch.from_numpy(image))
    for size in ((24, 24), (48, 48), (19, 27)):
        got = sampler.crops(torch.tensor(regions), *size)
        want = np.stack([crop_resize_reference(image, r, *size) for r in regions])
        np.testing.assert_allclose(got.numpy(), want, rtol=0, atol=1e-5)
    for size in ((20, 31), (37, 53), (60, 70), (12, 12)):  # pyramid levels: the whole photo, down and up
        want = crop_resize_reference(image, (0, 37, 0, 53), *size)[None]
        np.testing.assert_allclose(sampler.level(*size).numpy(), want, rtol=0, atol=1e-5)


@pytest.mark.cuda
def test_area_crops_on_cuda_match_the_cpu_reference():
    image = np.random.default_rng(2).integers(0, 256, (61, 47, 3), dtype=np.uint8)
    regions = torch.tensor([[0, 61, 0, 47], [5, 50, 3, 40], [30, 33, 20, 22]])
    sampler = AreaSampler(torch.from_numpy(image).cuda())
    want = np.stack([crop_resize_reference(image, r, 24, 24) for r in regions.tolist()])
    np.testing.assert_allclose(sampler.crops(regions, 24, 24).cpu().numpy(), want, rtol=0, atol=1e-5)
    np.testing.assert_allclose(sampler.level(30, 23).cpu().numpy(),
                               crop_resize_reference(image, (0, 61, 0, 47), 30, 23)[None], rtol=0, atol=1e-5)


def _greedy_reference(boxes, scores, threshold, mode):
    """A plain loop: IoU in continuous units, 'min' in inclusive pixels (MTCNN's original)."""
    pad = 1.0 if mode == "min" else 0.0
    kept = []
    for i in sorted(range(len(scores)), key=lambda i: (-scores[i], i)):
        a = boxes[i]
        ok = True
        for j in kept:
            b = boxes[j]
            iw = max(0.0, min(a[2], b[2]) - max(a[0], b[0]) + pad)
            ih = max(0.0, min(a[3], b[3]) - max(a[1], b[1]) + pad)
            area_a = (a[2] - a[0] + pad) * (a[3] - a[1] + pad)
            area_b = (b[2] - b[0] + pad) * (b[3] - b[1] + pad)
            inter = iw * ih
            o = inter / min(area_a, area_b) if mode == "min" else inter / (area_a + area_b - inter)
            if o > threshold:
                ok = False
                break
        if ok:
            kept.append(i)
    return kept


@pytest.mark.parametrize("mode", ["union", "min"])
def test_nms_modes_match_a_plain_loop(mode):
    rng = np.random.default_rng(3)
    xy = rng.uniform(0, 60, (300, 2))
    wh = rng.uniform(4, 30, (300, 2))
    boxes = np.concatenate([xy, xy + wh], 1).astype(np.float32)
    scores = rng.uniform(0, 1, 300).astype(np.float32)
    for threshold in (0.3, 0.5, 0.7):
        got = nms_indices(torch.from_numpy(boxes), torch.from_numpy(scores), threshold, mode, chunk=64).tolist()
        assert got == _greedy_reference(boxes.tolist(), scores.tolist(), threshold, mode)


def test_min_overlap_drops_a_box_inside_another():
    boxes = torch.tensor([[0.0, 0, 100, 100], [10, 10, 40, 40]])
    scores = torch.tensor([0.9, 0.8])
    assert nms_indices(boxes, scores, 0.7, "union").tolist() == [0, 1]  # IoU 0.09
    assert nms_indices(boxes, scores, 0.7, "min").tolist() == [0]       # all of the small one is inside
    groups = torch.tensor([0, 1])
    assert nms_indices(boxes, scores, 0.7, "min", groups=groups).tolist() == [0, 1]


# ----------------------------------------------------------------------------------------------------------------
# the cascade on real photographs


@pytest.fixture(scope="module")
def detect():
    """The zoo's faces on a photo (reference backend), each photo run once per module."""
    cascade, found = make_cascade(in_memory(ReferenceBackend())), {}

    def faces(photo: str):
        if photo not in found:
            found[photo] = cascade.detect(_rgb(photo))
        return found[photo]

    return faces


@pytest.mark.parametrize("photo", ["astronaut", "grace_hopper"])
def test_finds_the_face_as_the_pytorch_cascade_does(detect, photo):
    faces = detect(photo)
    torch_nets = torch_networks(None)
    boxes, scores, marks = detect_faces(_rgb(photo), torch_nets["pnet"], torch_nets["rnet"], torch_nets["onet"])
    assert len(faces.scores) == len(scores) == 1
    assert float(faces.scores[0]) > 0.99
    np.testing.assert_allclose(faces.boxes.numpy(), boxes, rtol=0, atol=2.0)
    np.testing.assert_allclose(faces.landmarks.numpy(), marks, rtol=0, atol=2.0)
    x1, y1, x2, y2 = faces.boxes[0].tolist()
    eyes = faces.landmarks[0, :2]  # both eyes inside the box, in its upper half
    assert (eyes[:, 0] > x1).all() and (eyes[:, 0] < x2).all() and (eyes[:, 1] < (y1 + y2) / 2).all()


def test_astronauts_face_where_weights_md_saw_it(detect):
    np.testing.assert_allclose(detect("astronaut").boxes[0].numpy(), [179, 61, 267, 173], atol=4)  # "about" that


@pytest.mark.parametrize("photo", ["chelsea", "coffee", "china"])
def test_no_face_on_the_cat_the_cup_or_the_pagoda(detect, photo):
    assert len(detect(photo).scores) == 0


@pytest.mark.cuda
def test_cascade_steps_on_cuda_equal_the_cpu_ones(detect):
    # crops, box arithmetic and NMS on the GPU (the networks stay on the reference backend)
    faces = make_cascade(in_memory(ReferenceBackend()), device="cuda").detect(_rgb("astronaut"))
    assert faces.boxes.device.type == "cuda"
    np.testing.assert_allclose(faces.boxes.cpu().numpy(), detect("astronaut").boxes.numpy(), rtol=0, atol=1e-3)
    np.testing.assert_allclose(faces.landmarks.cpu().numpy(), detect("astronaut").landmarks.numpy(), atol=1e-3)


@pytest.mark.tensorrt
def test_tensorrt_engines_find_the_same_faces(detect):
    from zoo.engine.backends import choose_backend
    faces = make_cascade(in_memory(choose_backend("tensorrt"))).detect(_rgb("grace_hopper"))
    want = detect("grace_hopper")
    assert len(faces.scores) == len(want.scores) == 1
    np.testing.assert_allclose(faces.boxes.cpu().numpy(), want.boxes.numpy(), rtol=0, atol=2.0)


# ----------------------------------------------------------------------------------------------------------------
# the command line


def test_build_then_infer_writes_json_lines_and_images(tmp_path, capsys):
    # the shared commands: one engine file holding the three networks, each with its own header and profile
    engine, out = tmp_path / "mtcnn.engine", tmp_path / "runs"
    assert main(["build", "-o", str(engine), "--max-side", "640"]) == 0
    header, _ = read_engine(engine)
    assert [s["name"] for s in header.stages] == ["pnet", "rnet", "onet"]
    stages = {s["name"]: s["header"] for s in header.stages}
    assert stages["pnet"]["profile"]["max"] == [1, 3, 385, 385]  # 640 * 12 / 20 + 1
    assert stages["onet"]["batch"] == [1, 64, 256] and stages["onet"]["input_shape"] == [-1, 3, 48, 48]
    photos = tmp_path / "photos"
    photos.mkdir()
    small = cv2.resize(cv2.imread(str(asset_path("astronaut"))), (256, 256), interpolation=cv2.INTER_AREA)
    cv2.imwrite(str(photos / "astronaut.png"), small)  # half size: the face is still 45 px wide
    (photos / "broken.jpg").write_bytes(b"not an image")
    assert main(["infer", "-e", str(engine), "-s", str(photos), "--out", str(out)]) == 0
    records = {json.loads(line)["file"].rsplit("/", 1)[1]: json.loads(line)
               for line in (out / "predictions.jsonl").read_text().splitlines()}
    assert "error" in records["broken.jpg"]
    (face,) = records["astronaut.png"]["faces"]
    assert face["score"] > 0.99 and len(face["box"]) == 4 and len(face["landmarks"]) == 5
    assert cv2.imread(str(out / "astronaut.png")).shape == (256, 256, 3)


def _last_line(capsys) -> str:
    return capsys.readouterr().err.strip().splitlines()[-1]


def test_missing_or_wrong_weight_files_are_one_line(tmp_path, capsys):
    folder = tmp_path / "weights"
    folder.mkdir()
    shutil.copy(asset_path("mtcnn_pnet"), folder / "pnet.pt")
    shutil.copy(asset_path("mtcnn_onet"), folder / "onet.pt")
    assert main(["build", "-w", str(folder), "-o", str(tmp_path / "e")]) == 2
    assert "no rnet.pt" in _last_line(capsys)
    shutil.copy(asset_path("mtcnn_onet"), folder / "rnet.pt")  # another network's file under rnet's name
    assert main(["build", "-w", str(folder), "-o", str(tmp_path / "e")]) == 2
    line = _last_line(capsys)
    assert "rnet.pt" in line and "onet weights" in line
    (folder / "rnet.pt").write_bytes(b"\x00garbage")
    assert main(["build", "-w", str(folder), "-o", str(tmp_path / "e")]) == 2
    assert "rnet.pt" in _last_line(capsys)
    assert not (tmp_path / "e").exists()  # nothing written when a file is bad


def test_engine_file_errors_are_one_line(tmp_path, capsys):
    assert main(["infer", "-e", str(tmp_path), "-s", str(asset_path("coffee"))]) == 2
    assert "is a folder, not an engine file" in _last_line(capsys)
    engine = tmp_path / "mtcnn.engine"
    assert main(["build", "-o", str(engine), "--max-side", "64"]) == 0
    header, payload = read_engine(engine)
    write_engine(tmp_path / "cut.engine", header, payload[:-10])  # the stages claim more bytes than there are
    assert main(["infer", "-e", str(tmp_path / "cut.engine"), "-s", str(asset_path("coffee"))]) == 2
    assert "damaged engine file" in _last_line(capsys)


def test_infer_never_writes_over_its_inputs(tmp_path, capsys):
    photo = tmp_path / "hopper.jpg"
    shutil.copy(asset_path("grace_hopper"), photo)
    before = photo.read_bytes()
    assert main(["infer", "-s", str(tmp_path), "--out", str(tmp_path)]) == 2
    assert "refusing to write over an input" in _last_line(capsys)
    assert photo.read_bytes() == before
