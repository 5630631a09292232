"""YOLO26's semantic and depth tasks end to end, on checkpoints as ultralytics saves them (pickled model in FP16 with
its yaml; tests/upstream_pickle.py) at scale n with a 64 px input: `validate` passes per layer at FP32 1e-4;
`infer --out` on a real photograph writes the class map / the 16-bit log-depth PNG and the pictures, and what the
files hold, read back, is the PyTorch module's output on the same letterboxed input mapped back to the photo here
(crop and resize written out in this file); without --out the records carry the same maps for `serve` to draw.
FP16 against FP32: the part's pixel agreement."""
from __future__ import annotations

import argparse
import base64
import copy
import json
import re
import shutil
import sys
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch
import torch.nn.functional as F

from zoo.assets import asset_path
from zoo.engine.cli import main
from zoo.vision.draw import draw_record
from zoo.vision.letterbox import letterbox_params, preprocess
from zoo.vision.masks import decode_rle
from zoo.yolo import walker
from zoo.yolo.model import YoloModel
from zoo.yolo.random import randomize
from zoo.yolo.registry import Options

sys.path.insert(0, str(Path(__file__).parent))
from upstream_pickle import save_upstream_checkpoint  # noqa: E402

SIZE = 64
UPSTREAM_CLASS = {"yolo26-sem": "SemanticSegmentationModel", "yolo26-depth": "DepthModel"}
COMMAND = "yolo26"   # (any command of the ultralytics line reads the family from the weights)


def pickled(name: str, path: Path, nc: int | None = None) -> torch.nn.Module:
    """A scale-n checkpoint of table `name` as ultralytics saves it; returns the module in FP32 with the FP16
    weights the file holds (the independent reference)."""
    table = walker.official_table(name)
    table["scale"] = "n"
    if nc:
        table["nc"] = nc
    module = randomize(walker.build_module(walker.resolve(table, "n"), Options()), 0).eval()
    reference = copy.deepcopy(module).half().float().eval()
    names = {i: f"stuff{i}" for i in range(nc)} if nc else {0: "item"}
    save_upstream_checkpoint(module, path, "ultralytics.nn.tasks", UPSTREAM_CLASS[name], yaml=table, names=names)
    return reference


@pytest.fixture(scope="module")
def checkpoints(tmp_path_factory) -> dict[str, tuple[Path, torch.nn.Module]]:
    """Per table: the pickled checkpoint and its FP32 reference module (built once for the file)."""
    folder = tmp_path_factory.mktemp("checkpoints")
    return {name: (folder / f"{name}.pt", pickled(name, folder / f"{name}.pt", nc))
            for name, nc in (("yolo26-sem", 5), ("yolo26-depth", None))}


@pytest.fixture(scope="module")
def photo_folder(tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("photos")
    shutil.copy(asset_path("chelsea"), folder / "chelsea.png")
    return folder


def to_photo(values: np.ndarray, photo_hw, nearest: bool) -> np.ndarray:
    """A map at the network input's size back onto the photo: the letterbox's padding cropped, then resized."""
    p = letterbox_params(photo_hw, (SIZE, SIZE))
    inner = np.ascontiguousarray(values[p.pad_top:p.pad_top + p.new_h, p.pad_left:p.pad_left + p.new_w])
    return cv2.resize(inner, (photo_hw[1], photo_hw[0]),
                      interpolation=cv2.INTER_NEAREST if nearest else cv2.INTER_LINEAR)


def run_infer(weights: Path, source: Path, out: Path | None, capsys) -> list[dict]:
    argv = ["infer", "--weights", str(weights), "--source", str(source), "--input-size", str(SIZE)]
    assert main(YoloModel(COMMAND), argv + (["--out", str(out)] if out else [])) == 0
    if out:
        return [json.loads(line) for line in (out / "predictions.jsonl").read_text().splitlines()]
    return [json.loads(line) for line in capsys.readouterr().out.splitlines() if line.startswith("{")]


def test_semantic_checkpoint_validates_and_infer_writes_its_class_map(tmp_path, checkpoints, photo_folder, capsys):
    weights, reference = checkpoints["yolo26-sem"]
    assert main(YoloModel(COMMAND), ["validate", "--weights", str(weights), "--input-size", str(SIZE)]) == 0
    assert "layers pass (tolerance 0.0001)" in capsys.readouterr().out
    # --images counts what a semantic network gives: the input's pixels (one photo), not detections
    assert main(YoloModel(COMMAND), ["validate", "--weights", str(weights), "--input-size", str(SIZE),
                                     "--precision", "fp16", "--images", str(photo_folder)]) == 0
    line = capsys.readouterr().out.strip().splitlines()[-1]
    matched, total = map(int, re.search(r"fp16 reproduces (\d+) of (\d+) FP32 pixel classes", line).groups())
    assert total == SIZE * SIZE and matched > 0.95 * total, line

    out = tmp_path / "out"
    record, = run_infer(weights, photo_folder, out, capsys)
    photo = cv2.imread(str(photo_folder / "chelsea.png"))
    written = cv2.imread(str(out / "chelsea.classes.png"), cv2.IMREAD_UNCHANGED)
    assert record["class_map"] == str(out / "chelsea.classes.png") and written.dtype == np.uint8
    assert written.shape == photo.shape[:2]

    with torch.no_grad():
        logits = reference(torch.from_numpy(preprocess([photo], SIZE)[0]))
    up = F.interpolate(logits, scale_factor=8, mode="bilinear", align_corners=False)[0]
    top2 = up.topk(2, 0).values
    expected = to_photo(up.argmax(0).numpy().astype(np.uint8), photo.shape[:2], nearest=True)
    clear = to_photo(((top2[0] - top2[1]) > 1e-3).numpy().astype(np.uint8), photo.shape[:2], nearest=True) == 1
    assert clear.mean() > 0.98 and len(np.unique(expected)) > 1
    assert np.array_equal(written[clear], expected[clear])
    assert {s["class_id"] for s in record["segments"]} == set(np.unique(written).tolist())
    assert record["segments"][0]["class_name"].startswith("stuff")
    assert cv2.imread(str(out / "chelsea.png")).shape == photo.shape  # the colour overlay

    # without --out (as `serve` answers): the per-class masks rebuild the same map, and draw as the overlay
    plain, = run_infer(weights, photo_folder, None, capsys)
    rebuilt = np.full(photo.shape[:2], 255, np.uint8)
    for segment in plain["segments"]:
        rebuilt[decode_rle(segment["mask"])] = segment["class_id"]
    assert np.array_equal(rebuilt, written)
    assert np.array_equal(draw_record(photo, plain), cv2.imread(str(out / "chelsea.png")))


def test_depth_checkpoint_validates_and_infer_writes_a_16_bit_log_depth_png(tmp_path, checkpoints, photo_folder,
                                                                           capsys):
    weights, reference = checkpoints["yolo26-depth"]
    assert main(YoloModel(COMMAND), ["validate", "--weights", str(weights), "--input-size", str(SIZE)]) == 0
    assert "output:model.23.full" in capsys.readouterr().out

    out = tmp_path / "out"
    record, = run_infer(weights, photo_folder, out, capsys)
    photo = cv2.imread(str(photo_folder / "chelsea.png"))
    written = cv2.imread(str(out / "chelsea.depth.png"), cv2.IMREAD_UNCHANGED)
    assert written.dtype == np.uint16 and written.shape == photo.shape[:2]
    encoding = record["depth"]["png_encoding"]
    log_depth = written / encoding["log_depth_scale"] + encoding["log_depth_offset"]

    with torch.no_grad():
        _, full = reference(torch.from_numpy(preprocess([photo], SIZE)[0]))
    expected = np.log(to_photo(full[0, 0].numpy(), photo.shape[:2], nearest=False).astype(np.float64))
    assert np.abs(log_depth - expected).max() <= 0.5 / encoding["log_depth_scale"] + 1e-4
    assert np.ptp(expected) > 40 / encoding["log_depth_scale"]  # a map of many PNG levels, not a constant
    assert record["depth"]["min_m"] == pytest.approx(np.exp(expected.min()), rel=1e-3)
    assert cv2.imread(str(out / "chelsea.png")).shape == photo.shape  # the colour map

    plain, = run_infer(weights, photo_folder, None, capsys)
    embedded = cv2.imdecode(np.frombuffer(base64.b64decode(plain["depth"]["png_base64"]), np.uint8),
                            cv2.IMREAD_UNCHANGED)
    assert np.array_equal(embedded, written)
    assert np.array_equal(draw_record(photo, plain), cv2.imread(str(out / "chelsea.png")))


def test_fp16_agreement_with_fp32(checkpoints):
    """The parts' agreement on FP16 outputs of the reference backend: most pixels keep FP32's class (all of them
    for FP32 itself) and the depths stay within delta-1 (a factor 1.25) of FP32's."""
    from layers.precision import Precision
    from wts.weight_map import WeightMap
    from zoo.engine.backends import ReferenceBackend
    from zoo.engine.model import state_dict_arrays
    from zoo.engine.networks import define_network
    model = YoloModel(COMMAND)
    photo = cv2.imread(str(asset_path("chelsea")))
    for name, least in (("yolo26-sem", 0.95), ("yolo26-depth", 0.99)):
        weights = WeightMap(state_dict_arrays(checkpoints[name][1]), name)
        config = model.config_from_weights(weights, argparse.Namespace(input_size=(SIZE, SIZE)))
        batch, _ = model.load_images([("chelsea", photo, None)], config)
        outputs = {}
        for mode in ("fp32", "fp16"):
            net, _ = define_network(model, ReferenceBackend(), weights, config, Precision(mode))
            x = batch.astype(np.float16) if mode == "fp16" else batch
            outputs[mode] = ReferenceBackend().runner_for(net).run({model.input_name: x})
        agree, total = model.agreement(outputs["fp32"], outputs["fp16"], config)
        assert total == (SIZE * SIZE if name == "yolo26-sem" else (SIZE // 4) ** 2) and agree / total > least
        assert model.agreement(outputs["fp32"], outputs["fp32"], config) == (total, total)
