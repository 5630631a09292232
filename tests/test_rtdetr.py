"""RT-DETR (zoo/yolo/blocks: hgnet.py, repc3.py, resnet_layer.py, transformer.py, rtdetr.py; zoo/rtdetr): every block
against its reference module on the reference backend and on ONNX Runtime at FP32 1e-4 (relative to
max(1, max|ref|)), the decoder with both attention forms, a dynamic batch and invalid anchors; a narrow RT-DETR
table (tests/data/rtdetr-tiny.yaml) pickled as ultralytics saves it, validated layer by layer, built and run through
the command.

Sizes are tiny: 64 px inputs, a decoder of hidden size 32 with 30 queries (or 16 on a 32 x 416 input, whose left
and right columns at stride 8 are invalid anchors)."""
from __future__ import annotations

import argparse
import json

import numpy as np
import pytest
import torch

from tests.test_yolo_blocks_extra import check_block
from upstream_pickle import save_upstream_checkpoint
from wts.weight_map import WeightMap
from zoo.engine import validate
from zoo.engine.backends import ReferenceBackend
from zoo.engine.cli import main
from zoo.engine.model import randomize_batchnorm, state_dict_arrays
from zoo.engine.onnx.backend import OnnxBackend
from zoo.rtdetr.model import RtdetrModel
from zoo.trt_api import trt
from zoo.yolo import walker
from zoo.yolo.blocks.rtdetr import anchor_logits
from zoo.yolo.random import randomize
from zoo.yolo.registry import Options, lookup, using

TINY = "tests/data/rtdetr-tiny.yaml"
PREFIX = "model.3"


# ------------------------------------------------------------------------------------------------ backbone, neck

@pytest.mark.parametrize("name,args,shape", [
    ("HGStem", [3, 8, 16], (2, 3, 32, 32)),
    ("HGBlock", [16, 8, 32, 3, 2, False, False], (2, 16, 8, 8)),
    ("HGBlock", [32, 8, 32, 5, 2, True, True], (2, 32, 8, 8)),
    ("RepC3", [16, 16, 2], (2, 16, 8, 8)),
    ("RepC3", [16, 24, 1, 0.5], (2, 16, 8, 8)),
    ("ResNetLayer", [3, 16, 1, True, 1], (2, 3, 32, 32)),
    ("ResNetLayer", [16, 8, 2, False, 2], (2, 16, 8, 8)),
    ("AIFI", [32, 64, 4], (2, 32, 4, 6)),
])
def test_block_matches_its_reference(name, args, shape):
    rows = {r.name for r in check_block(name, args, shape, min_rows=4)}
    inner = {"HGStem": "stem2b", "HGBlock": "m.1", "RepC3": "m.0.conv1", "AIFI": "norm1"}.get(name)
    if inner:
        assert f"{PREFIX}.{inner}" in rows


def test_aifi_position_embedding_is_upstreams_formula():
    """Row y, column x of an H x W map: [sin(y w_i), cos(y w_i), sin(x w_i), cos(x w_i)], w_i = 10000^(-i/d)."""
    from zoo.yolo.blocks.transformer import sincos_position_embedding
    h, w, c = 3, 5, 16
    d = c // 4
    pos = sincos_position_embedding(h, w, c)[0].double()
    omega = 1.0 / 10000 ** (np.arange(d) / d)
    y, x = 2, 4
    token = pos[y * w + x].numpy()
    np.testing.assert_allclose(token, np.concatenate([np.sin(y * omega), np.cos(y * omega), np.sin(x * omega),
                                                      np.cos(x * omega)]), atol=1e-6)


def test_anchors_and_valid_mask():
    logits, valid = anchor_logits([(2, 60), (1, 2)])
    anchors = 1 / (1 + np.exp(-logits[0, valid[0, :, 0]]))
    assert logits.shape == (1, 122, 4) and valid.shape == (1, 122, 1)
    # level 0: 60 columns, so x centres 0.5/60 and 59.5/60 fall outside (0.01, 0.99); level 1: wh 0.1
    assert not valid[0, 0, 0] and not valid[0, 59, 0] and valid[0, 1:59].all() and valid[0, 120:].all()
    assert np.isinf(logits[0, 0]).all() and np.isfinite(logits[0, 1]).all()
    np.testing.assert_allclose(anchors[-1], [0.75, 0.5, 0.1, 0.1], atol=1e-6)


# ------------------------------------------------------------------------------------------------ the decoder

class Head(torch.nn.Module):
    def __init__(self, args):
        super().__init__()
        self.model = torch.nn.ModuleDict({"3": lookup("RTDETRDecoder", "test").module(*args)})

    def forward(self, xs):
        return self.model["3"](xs)


def _decoder(args, seed=0):
    torch.manual_seed(seed)
    module = Head(args)
    g = torch.Generator().manual_seed(seed + 1)
    for p in module.parameters():  # wide enough that sampling points fall outside the maps and scores differ
        p.data.normal_(0, 0.3, generator=g)
    randomize_batchnorm(module, g)
    return module.eval()


def _run_decoder(module, args, xs, backend, attention):
    with using(Options(attention=attention)):
        expected = validate.reference_outputs(module, xs)
        weights = WeightMap(state_dict_arrays(module), "decoder")
        net = ReferenceBackend().create_network()
        inputs = [net.add_input(f"x{i}", trt.float32, (-1, *x.shape[1:])) for i, x in enumerate(xs)]
        out = lookup("RTDETRDecoder", "test").build(net, weights, PREFIX, inputs, *args)[0]
    names = validate.mark_comparable(net, set(expected))
    net.mark_output(out)
    runner = backend.runner_for(net)
    assert weights.unused() == []
    return names, expected, out.name, runner


@pytest.mark.parametrize("attention", ["plugin", "layers"])
def test_decoder_with_invalid_anchors_and_a_dynamic_batch(attention):
    ch, shapes = [8, 12, 16], [(4, 52), (2, 26), (1, 13)]
    args = [5, ch, 32, 16, 2, 4, 2, 48]
    module = _decoder(args)
    g = torch.Generator().manual_seed(3)
    xs = [torch.randn(2, c, h, w, generator=g) for c, (h, w) in zip(ch, shapes)]
    for backend in (ReferenceBackend(), OnnxBackend()):
        names, expected, out, runner = _run_decoder(module, args, xs, backend, attention)
        got = runner.run({f"x{i}": x.numpy() for i, x in enumerate(xs)})
        rows = [validate.compare(n, got[n], expected[n], 1e-4) for n in names]
        rows.append(validate.compare("output", got[out], expected["__output__"], 1e-4))
        assert not [r for r in rows if not r.ok], validate.format_table(rows, "tolerance 1e-4")
        assert len(rows) > 30 and f"{PREFIX}.decoder.layers.1.cross_attn" in names
        single = runner.run({f"x{i}": x[1:].numpy() for i, x in enumerate(xs)})[out]
        np.testing.assert_allclose(single[0], got[out][1], atol=1e-5)
    assert expected["__output__"].shape == (2, 16, 6)
    scores = expected["__output__"][..., 4]
    assert (scores[:, :-1] >= scores[:, 1:]).all()  # best first


# ------------------------------------------------------------------------------------------------ a whole model

@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    """(path, module): the tiny table with random weights, pickled in FP16 as ultralytics saves a model."""
    path = tmp_path_factory.mktemp("rtdetr") / "rtdetr-tiny.pt"
    table = walker.read_table(TINY)
    module = randomize(walker.build_module(walker.resolve(table, "t"), Options()), 0, calib_size=64).eval()
    save_upstream_checkpoint(module, path, "ultralytics.nn.tasks", "RTDETRDetectionModel", yaml=table,
                             names={i: f"thing{i}" for i in range(table["nc"])})
    return path, module.float()


def test_a_pickled_checkpoint_validates_builds_and_infers(tiny, tmp_path, capsys):
    path, module = tiny
    assert main(RtdetrModel(), ["validate", "--weights", str(path), "--input-size", "64", "--batch", "2"]) == 0
    out = capsys.readouterr().out
    assert "layers pass (tolerance 0.0001)" in out
    assert "model.27.decoder.layers.1.cross_attn" in out and "model.10.norm2" in out and "model.0.stem4" in out
    engine = tmp_path / "tiny.engine"
    assert main(RtdetrModel(), ["build", "--weights", str(path), "-o", str(engine), "--input-size", "64",
                                "--batch", "1:2:2", "--attention", "layers"]) == 0
    x = np.random.default_rng(0).random((2, 3, 64, 64), dtype=np.float32)
    np.save(tmp_path / "x.npy", x)
    capsys.readouterr()
    assert main(RtdetrModel(), ["infer", "--engine", str(engine), "--source", str(tmp_path / "x.npy"),
                                "--conf", "0.3"]) == 0
    records = [json.loads(line) for line in capsys.readouterr().out.splitlines() if line.startswith("{")]
    with torch.no_grad():
        rows = module(torch.from_numpy(x))
    for record, item in zip(records, rows):
        kept = item[item[:, 4] > 0.3]
        assert len(record["detections"]) == len(kept) > 0
        for det, row in zip(record["detections"], kept):
            cx, cy, w, h = (row[:4] * 64).tolist()
            assert det["box"] == pytest.approx([cx - w / 2, cy - h / 2, cx + w / 2, cy + h / 2], abs=0.02)
            assert det["class_name"] == f"thing{int(row[5])}" and det["score"] == pytest.approx(float(row[4]),
                                                                                                 abs=1e-4)


def test_images_go_back_to_original_pixels(tiny, tmp_path, capsys):
    path, _ = tiny
    assert main(RtdetrModel(), ["infer", "--weights", str(path), "--input-size", "64", "--source",
                                "tests/data/images/wide.jpg", "--conf", "0.2", "--out", str(tmp_path / "out")]) == 0
    record = json.loads((tmp_path / "out" / "predictions.jsonl").read_text().splitlines()[0])
    import cv2
    h, w = cv2.imread("tests/data/images/wide.jpg").shape[:2]
    boxes = np.array([d["box"] for d in record["detections"]])
    assert len(boxes) and (boxes[:, [0, 2]] <= w).all() and (boxes[:, [1, 3]] <= h).all() and boxes.min() >= 0
    assert (tmp_path / "out" / "wide.jpg").is_file()


def test_a_wrong_variant_or_class_count_is_one_line(tiny, tmp_path, capsys):
    path, module = tiny
    assert main(RtdetrModel(), ["validate", "--weights", str(path), "--num-classes", "80"]) == 2
    assert "--num-classes 80 disagrees" in capsys.readouterr().err
    torch.save(module.state_dict(), tmp_path / "state.pt")  # no table: the official ones do not fit
    assert main(RtdetrModel(), ["validate", "--weights", str(tmp_path / "state.pt")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert "no RT-DETR decoder" in err[-1] and "rtdetr-l" in err[-1] and len(err) == 2  # progress, then one error


def test_fp16_builds_keep_the_decoder_in_fp32(tiny):
    """FP16 backbone and neck, the decoder (top-k selection, attention, box refinement) in FP32 after input_proj."""
    from layers.precision import Precision
    from zoo.engine.networks import define_network
    path, module = tiny
    weights = WeightMap(state_dict_arrays(module), str(path))
    model = RtdetrModel()
    config = model.config_from_weights(weights, argparse.Namespace(model_yaml=TINY, input_size=(64, 64)))
    net, outputs = define_network(model, ReferenceBackend(), weights, config, Precision("fp16"))
    dtypes = {}
    for i in range(net.num_layers):  # by tensor name
        layer = net.get_layer(i)
        for j in range(layer.num_outputs):
            dtypes[layer.get_output(j).name] = layer.get_output(j).dtype
    assert dtypes["model.26"] == trt.float16 and dtypes["model.27.input_proj.2"] == trt.float16
    assert dtypes["model.27.decoder.layers.1.cross_attn.attention_weights"] == trt.float32
    assert dtypes["model.27/query_topk/values"] == trt.float32 and dtypes[outputs[0]] == trt.float32
