"""YOLOv5 on the zoo's network: every layer against the PyTorch reference, both decode forms, weights from
tensorrtx-format .wts, dynamic batches where each image gets its own detections, and the infer pipeline."""
import argparse
import struct

import numpy as np
import pytest
import torch

import wts
from wts.weight_map import WeightMap
from zoo.engine import validate
from zoo.engine.backends import ReferenceBackend
from zoo.engine.backend_api import BuildOptions
from zoo.engine.networks import define_network
from zoo.engine.model import state_dict_arrays
from zoo.vision.images import list_images, read_image
from zoo.vision.letterbox import preprocess
from zoo.vision.nms import batched_nms, nms_reference
from zoo.yolov5.model import random_yolov5
from zoo.yolov5.zoo_model import YoloV5Model

MODEL = YoloV5Model()
IMAGES = "tests/data/images"


def _args(size=(256, 256), decode="plugin", **kw):
    return argparse.Namespace(input_size=size, decode=decode, variant=None, num_classes=None, **kw)


@pytest.fixture(scope="module")
def yolov5n():
    return random_yolov5("n", seed=1).eval()


def _validate(module, weights, args, batch=1, tolerance=1e-4):
    config = MODEL.config_from_weights(weights, args)
    x = torch.from_numpy(MODEL.sample_input(config, batch, seed=2))
    expected = validate.reference_outputs(module, x)
    backend = ReferenceBackend()
    net, outputs = define_network(MODEL, backend, weights, config)
    names = validate.mark_comparable(net, set(expected))
    got = backend.runner_for(net).run({MODEL.input_name: x.numpy()})
    rows = [validate.compare(n, got[n], expected[n], tolerance) for n in names]
    return rows, got[outputs[0]], expected["__output__"]


@pytest.mark.parametrize("variant, p6, size", [("n", False, (256, 320)), ("s", False, (192, 192)),
                                               ("s", True, (256, 256))])
def test_every_layer_matches_pytorch(variant, p6, size):
    module = random_yolov5(variant, seed=0, p6=p6).eval()
    rows, out, ref = _validate(module, WeightMap(state_dict_arrays(module), "random"), _args(size))
    assert len(rows) > 150  # every conv, bn, act, block, pool, upsample, concat, head conv and the decode
    bad = [r for r in rows if not r.ok]
    assert not bad, validate.format_table(bad, "tolerance 1e-4")
    _assert_close_fp32(out, ref)


def _assert_close_fp32(out, ref):
    """validate's criterion: |out - ref| <= 1e-4 * max(1, max|ref|). Boxes reach ~10^3 px, and the decode's
    exp-like terms turn the raw head's ~1e-5 relative FP32 differences into a few 1e-2 px."""
    assert out.shape == ref.shape
    assert (out - ref).abs().max().item() <= 1e-4 * max(1.0, ref.abs().max().item())


@pytest.mark.parametrize("decode", ["plugin", "layers"])
def test_both_decode_forms_equal_the_reference_output(yolov5n, decode):
    rows, out, ref = _validate(yolov5n, WeightMap(state_dict_arrays(yolov5n), "random"), _args(decode=decode),
                               batch=2)
    assert out.shape == ref.shape == (2, 3 * (32 * 32 + 16 * 16 + 8 * 8), 85)
    _assert_close_fp32(out, ref)
    torch.testing.assert_close(out[..., 4:], ref[..., 4:], rtol=0, atol=1e-4)  # scores, in [0, 1]


def _tensorrtx_wts(module, path):
    """A .wts written as tensorrtx's gen_wts.py does (independently here): anchor_grid and strides buffers added,
    every state_dict entry including num_batches_tracked, double space before the first value."""
    state = dict(module.state_dict())
    detect = module.model[-1]
    strides = torch.tensor([8.0, 16.0, 32.0])
    state["model.24.anchor_grid"] = detect.anchors * strides.view(-1, 1, 1)
    state["model.24.strides"] = strides
    with open(path, "w") as f:
        f.write(f"{len(state)}\n")
        for name, value in state.items():
            values = value.reshape(-1).float().tolist()
            f.write(f"{name} {len(values)} " + "".join(" " + struct.pack(">f", v).hex() for v in values) + "\n")


def test_tensorrtx_wts_validates(yolov5n, tmp_path):
    path = tmp_path / "yolov5n.wts"
    _tensorrtx_wts(yolov5n, path)
    weights = WeightMap(wts.load(path), str(path))
    rows, out, ref = _validate(yolov5n, weights, _args())
    assert all(r.ok for r in rows), validate.format_table([r for r in rows if not r.ok], "tolerance 1e-4")
    assert weights.unused() == []


def test_weights_of_another_architecture_are_refused():
    from zoo.resnet.model import ResNet
    weights = WeightMap(state_dict_arrays(ResNet(18)), "resnet18.pt")
    with pytest.raises(ValueError, match="resnet18.pt"):
        MODEL.config_from_weights(weights, _args())


def test_input_size_not_a_multiple_of_the_stride_is_refused(yolov5n):
    with pytest.raises(ValueError, match="input size 300x320 must be positive multiples of 32"):
        MODEL.config_from_weights(WeightMap(state_dict_arrays(yolov5n), "w"), _args(size=(300, 320)))


def test_dynamic_batch_gives_each_image_its_own_detections(yolov5n):
    """Batches of 4 over 6 images (the last one partial) give every image exactly what it gets alone."""
    weights = WeightMap(state_dict_arrays(yolov5n), "random")
    config = MODEL.config_from_weights(weights, _args())
    backend = ReferenceBackend()
    net, outputs = define_network(MODEL, backend, weights, config)
    runner = backend.load(backend.build(net, BuildOptions(MODEL.input_name, (1, 4, 4))))
    paths = list_images(IMAGES)
    assert len(paths) == 6
    nms = dict(conf_thres=0.3, iou_thres=0.45, max_det=50)
    batched = []
    for start in range(0, len(paths), 4):
        batch, _ = MODEL.load_batch(paths[start:start + 4], config)
        batched += batched_nms(runner.run({MODEL.input_name: batch})[outputs[0]], **nms)
    for path, got in zip(paths, batched):
        alone, _ = preprocess([read_image(path)], config["input_size"])
        expected = nms_reference(runner.run({MODEL.input_name: alone})[outputs[0]][0].numpy(), **nms)
        assert len(expected) > 0, "the test needs detections to compare"
        # other batch sizes round differently at FP32 (~1e-5 relative); another image's boxes would be far off
        np.testing.assert_allclose(got.numpy(), expected, rtol=1e-4, atol=2e-2, err_msg=str(path))


def test_infer_records_boxes_in_original_pixels(yolov5n, tmp_path):
    weights = WeightMap(state_dict_arrays(yolov5n), "random")
    config = MODEL.config_from_weights(weights, _args())
    backend = ReferenceBackend()
    net, outputs = define_network(MODEL, backend, weights, config)
    runner = backend.runner_for(net)
    paths = list_images(IMAGES) + list_images("tests/data/bad_images")
    batch, contexts = MODEL.load_batch(paths, config)
    args = argparse.Namespace(conf=0.3, iou=0.45, classes=None, agnostic=False, max_det=30, out=tmp_path,
                              no_draw=False)
    records = MODEL.records(runner.run({MODEL.input_name: batch}), contexts, config, args)
    assert [r["file"] for r in records] == [str(p) for p in paths]
    errors = [r for r in records if "error" in r]
    assert {r["file"].split("/")[-1] for r in errors} == {"broken.jpg", "empty.png"}
    for record, path in zip(records, paths):
        if "error" in record:
            continue
        h, w = read_image(path).shape[:2]
        boxes = np.array([d["box"] for d in record["detections"]]).reshape(-1, 4)
        assert (boxes[:, [0, 2]] >= 0).all() and (boxes[:, [0, 2]] <= w).all()
        assert (boxes[:, [1, 3]] >= 0).all() and (boxes[:, [1, 3]] <= h).all()
        assert (tmp_path / path.name).exists()  # annotated image
    assert sum(len(r.get("detections", [])) for r in records) > 0
