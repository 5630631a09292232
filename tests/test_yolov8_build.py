"""YOLOv8 / YOLO11 on the zoo's network against the reference modules: every layer at FP32 1e-4 with both decode
forms; weights as a pickled ultralytics-style checkpoint (FP16, `ema`/`model`, old module paths, SPPF without
activation), a tensorrtx-layout .wts, and folded ONNX exports (directly and through gen_wts); the batch test; the
infer pipeline; and one-line refusals."""
import argparse
import contextlib
import dataclasses
import struct
import sys
import types

import numpy as np
import pytest
import torch

from tools import gen_wts
from wts.weight_map import WeightMap
from zoo.engine import validate
from zoo.engine.backends import ReferenceBackend
from zoo.engine.backend_api import BuildOptions
from zoo.engine.cli import main
from zoo.engine.folding import fold_batchnorm
from zoo.engine.model import state_dict_arrays
from zoo.engine.networks import define_network
from zoo.vision.images import list_images, read_image
from zoo.vision.letterbox import preprocess
from zoo.vision.nms import batched_nms, nms_reference
import reference_yolov8 as ref
from zoo.yolo.model import YoloModel
from zoo.yolo.walker import official_table

V8, Y11 = YoloModel("yolov8"), YoloModel("yolo11")
IMAGES = "tests/data/images"


def _args(size=(64, 64), decode="plugin", family=None, **kw):
    return argparse.Namespace(input_size=size, decode=decode, family=family, sppf_act=None, **kw)


@pytest.fixture(scope="module")
def yolo11n():
    return ref.random_yolo("yolo11", "n", seed=1, calib_size=128)


@pytest.fixture(scope="module")
def yolov8n():
    return ref.random_yolo("yolov8", "n", seed=2, calib_size=128)


def _layers(model, module, weights, args, batch=1, x=None):
    """(rows of every compared layer, network output, reference output)."""
    config = model.config_from_weights(weights, args)
    if x is None:
        x = torch.from_numpy(model.sample_input(config, batch, seed=2))
    expected = validate.reference_outputs(module, x)
    backend = ReferenceBackend()
    net, outputs = define_network(model, backend, weights, config)
    names = validate.mark_comparable(net, set(expected))
    got = backend.runner_for(net).run({model.input_name: x.numpy()})
    rows = [validate.compare(n, got[n], expected[n], 1e-4) for n in names]
    rows.append(validate.compare("output", got[outputs[0]], expected["__output__"], 1e-4))
    return rows, got[outputs[0]], expected["__output__"]


def _assert_all_pass(rows, at_least):
    assert len(rows) >= at_least
    bad = [r for r in rows if not r.ok]
    assert not bad, validate.format_table(rows, "tolerance 1e-4")


@pytest.mark.parametrize("family,decode,size,rows", [("yolo11", "plugin", (64, 96), 260),
                                                    ("yolov8", "layers", (64, 64), 190)])
def test_every_layer_matches_pytorch(family, decode, size, rows, yolo11n, yolov8n):
    module = yolo11n if family == "yolo11" else yolov8n
    found, out, expected = _layers(V8, module, WeightMap(state_dict_arrays(module), "random"), _args(size, decode),
                                   batch=2)
    _assert_all_pass(found, rows)
    assert out.shape == expected.shape == (2, 84, sum((size[0] // s) * (size[1] // s) for s in (8, 16, 32)))
    if decode == "layers":
        assert any(r.name == "model.22.dfl" for r in found)  # the DFL expectation is compared on its own


# ------------------------------------------------------------------------------------ ultralytics-style checkpoint

ULTRALYTICS_PATHS = {
    "new": {"YoloV8": "ultralytics.nn.tasks.DetectionModel", "Conv": "ultralytics.nn.modules.conv.Conv",
            "DWConv": "ultralytics.nn.modules.conv.DWConv", "Concat": "ultralytics.nn.modules.conv.Concat",
            "Detect": "ultralytics.nn.modules.head.Detect", "DFL": "ultralytics.nn.modules.block.DFL",
            **{c: f"ultralytics.nn.modules.block.{c}" for c in ("C2f", "C3k2", "C3k", "SPPF", "C2PSA", "PSABlock",
                                                                   "Attention", "Bottleneck")}},
    "old": {"YoloV8": "ultralytics.nn.tasks.DetectionModel",
            **{c: f"ultralytics.nn.modules.{c}" for c in ("Conv", "DWConv", "Concat", "Detect", "DFL", "C2f", "C3k2",
                                                          "C3k", "SPPF", "C2PSA", "PSABlock", "Attention",
                                                          "Bottleneck")}},
}


@contextlib.contextmanager
def ultralytics_class_paths(kind):
    """Pickle the reference classes under ultralytics' module paths (which this test process cannot import)."""
    saved, added = {}, []
    for name, path in ULTRALYTICS_PATHS[kind].items():
        cls = getattr(ref, name)
        module, _, qualname = path.rpartition(".")
        saved[cls] = (cls.__module__, cls.__qualname__)
        parts = module.split(".")
        for depth in range(1, len(parts) + 1):  # pickle imports the module, so its parents must exist too
            name = ".".join(parts[:depth])
            if name not in sys.modules:
                sys.modules[name] = types.ModuleType(name)
                added.append(name)
        setattr(sys.modules[module], qualname, cls)
        cls.__module__, cls.__qualname__ = module, qualname
    try:
        yield
    finally:
        for cls, (module, qualname) in saved.items():
            cls.__module__, cls.__qualname__ = module, qualname
        for module in reversed(added):
            del sys.modules[module]


def save_ultralytics_checkpoint(module, path, kind="new", entry="ema"):
    """A .pt laid out as ultralytics saves it: a dict whose `ema` (or `model`) is the pickled FP16 model, with its
    `yaml`, `names` and `stride` attributes."""
    model = ref.YoloV8(module.arch)
    model.load_state_dict(module.state_dict())
    model.yaml = {**official_table(module.arch.family), "nc": module.arch.num_classes, "scale": "n"}
    model.names = {i: f"thing{i}" for i in range(module.arch.num_classes)}
    model.stride = torch.tensor([8.0, 16.0, 32.0])
    with ultralytics_class_paths(kind):
        torch.save({"epoch": -1, "model": model.half() if entry == "model" else None,
                    "ema": model.half() if entry == "ema" else None, "updates": 0, "date": "2024-01-01",
                    "version": "8.4.0"}, path)


def with_sppf_act(module, sppf_act: bool):
    """The same weights in a module whose SPPF cv1 has (or lacks) SiLU, as ultralytics 8.3 (8.4) builds it."""
    other = ref.YoloV8(dataclasses.replace(module.arch, sppf_act=sppf_act)).eval()
    other.load_state_dict(module.state_dict())
    return other


@pytest.mark.parametrize("kind,entry,sppf_act", [("new", "ema", False), ("old", "model", True)])
def test_pickled_ultralytics_checkpoint(tmp_path, capsys, kind, entry, sppf_act, yolo11n):
    module = with_sppf_act(yolo11n, sppf_act)
    path = tmp_path / "yolo11n.pt"
    save_ultralytics_checkpoint(module, path, kind, entry)
    if kind == "new":  # the command a user runs (the other case checks the same through the functions below)
        assert main(V8, ["validate", "--weights", str(path), "--input-size", "64"]) == 0
        captured = capsys.readouterr()
        assert "all " in captured.out and "layers pass" in captured.out
        assert "found yolo11n weights (80 classes, SPPF cv1 without activation recorded in the checkpoint)" in \
            captured.err
    # against the pickled module itself (FP16 weights, run in FP32), not a module the config rebuilt
    from zoo.engine.networks import load_weights
    args = argparse.Namespace(weights=path, seed=0, **vars(_args()))
    weights, config, _ = load_weights(Y11, args)
    assert config["class_names"][:2] == ["thing0", "thing1"] and config["sppf_act"] is sppf_act
    original = module.half().float().eval()
    rows, out, expected = _layers(Y11, original, weights, args)
    _assert_all_pass(rows, 250)


def test_a_flag_contradicting_the_checkpoint_is_one_line(tmp_path, capsys, yolo11n):
    save_ultralytics_checkpoint(with_sppf_act(yolo11n, False), tmp_path / "y.pt")
    assert main(Y11, ["validate", "--weights", str(tmp_path / "y.pt"), "--input-size", "64", "--sppf-act", "silu"]) == 2
    err = capsys.readouterr().err.strip().splitlines()[-1]
    assert "y.pt: --sppf-act silu contradicts the checkpoint" in err


# ------------------------------------------------------------------------------------ .wts and folded ONNX


def write_tensorrtx_wts(module, path):
    """As tensorrtx's yolov8/yolo11 gen_wts.py writes it (independently here): the FP32 state_dict of the model,
    num_batches_tracked and the DFL's fixed weights included, one hex float per value after a double space."""
    state = module.state_dict()
    with open(path, "w") as f:
        f.write(f"{len(state)}\n")
        for name, value in state.items():
            values = value.reshape(-1).float().tolist()
            f.write(f"{name} {len(values)} " + "".join(" " + struct.pack(">f", v).hex() for v in values) + "\n")


def test_tensorrtx_wts_validates(yolov8n, tmp_path, capsys):
    write_tensorrtx_wts(yolov8n, tmp_path / "yolov8n.wts")
    assert main(Y11, ["validate", "--weights", str(tmp_path / "yolov8n.wts"), "--input-size", "64",
                      "--decode", "layers"]) == 0
    captured = capsys.readouterr()
    assert "layers pass" in captured.out and "found yolov8n weights (80 classes, SPPF cv1 SiLU as yolov8 releases it)" in \
        captured.err


def export_folded_onnx(module, path):
    """The reference module with every BatchNorm folded, through torch.onnx.export, as ultralytics exports."""
    folded = fold_batchnorm(ref.YoloV8(module.arch).eval())
    folded.load_state_dict(fold_batchnorm(_copy(module)).state_dict())
    torch.onnx.export(folded, torch.rand(1, 3, 64, 64), str(path), dynamo=False, opset_version=17,
                      input_names=["images"], output_names=["output0"])
    return folded


def _copy(module):
    clone = ref.YoloV8(module.arch).eval()
    clone.load_state_dict(module.state_dict())
    return clone


def test_folded_onnx_weights_through_gen_wts(yolo11n, tmp_path, capsys):
    from zoo.engine.checkpoint import load_state_dict
    onnx_path, wts_path = tmp_path / "yolo11n.onnx", tmp_path / "yolo11n.wts"
    folded = export_folded_onnx(yolo11n, onnx_path)
    assert gen_wts.main(["-w", str(onnx_path), "-o", str(wts_path), "-q"]) == 0
    weights = WeightMap(__import__("wts").load(wts_path), str(wts_path))
    assert not any(".bn." in k for k in weights.keys()) and "model.0.conv.bias" in weights
    # every layer against the folded module, the network against the unfolded original (exact up to rounding)
    rows, out, expected = _layers(Y11, folded, weights, _args())
    _assert_all_pass(rows, 150)
    unfolded = yolo11n(torch.from_numpy(Y11.sample_input(Y11.config_from_weights(weights, _args()), 1, seed=2)))
    assert (out - unfolded).abs().max() <= 1e-4 * max(1.0, unfolded.abs().max().item())
    # ONNX weights also work as --weights directly, and the validate command folds its reference to match
    direct = load_state_dict(onnx_path).tensors
    assert list(direct) == list(weights.keys())
    assert all(np.array_equal(direct[k].reshape(-1), weights.raw(k).reshape(-1)) for k in direct)
    from zoo.engine.model import load_state_into
    reference = load_state_into(Y11.reference_module(Y11.config_from_weights(weights, _args())), weights)
    assert not any(isinstance(m, torch.nn.BatchNorm2d) for m in reference.modules())


def test_renamed_onnx_initializers_are_recovered_from_node_names(yolov8n, tmp_path):
    import onnx

    from zoo.engine.checkpoint import load_state_dict
    path = tmp_path / "v8.onnx"
    export_folded_onnx(yolov8n, path)
    proto = onnx.load(str(path))
    renamed = {"model.0.conv.weight": "onnx::Conv_900", "model.22.cv3.1.2.bias": "onnx::Conv_901"}
    for t in proto.graph.initializer:
        t.name = renamed.get(t.name, t.name)
    for node in proto.graph.node:
        node.input[:] = [renamed.get(i, i) for i in node.input]
    onnx.save(proto, str(path))
    tensors = load_state_dict(path).tensors
    assert set(renamed) <= set(tensors) and not any(k.startswith("onnx::") for k in tensors)
    np.testing.assert_array_equal(tensors["model.0.conv.weight"],
                                  fold_batchnorm(_copy(yolov8n)).state_dict()["model.0.conv.weight"].numpy())


# ------------------------------------------------------------------------------------ batches, infer, errors


def test_dynamic_batch_gives_each_image_its_own_detections(yolo11n):
    weights = WeightMap(state_dict_arrays(yolo11n), "random")
    config = Y11.config_from_weights(weights, _args((96, 96)))
    backend = ReferenceBackend()
    net, outputs = define_network(Y11, backend, weights, config)
    runner = backend.load(backend.build(net, BuildOptions(Y11.input_name, (1, 4, 4))))
    paths = list_images(IMAGES)
    nms = dict(conf_thres=0.3, iou_thres=0.7, max_det=50, objectness=False)
    batched = []
    for start in range(0, len(paths), 4):
        batch, _ = Y11.load_batch(paths[start:start + 4], config)
        batched += batched_nms(runner.run({Y11.input_name: batch})[outputs[0]].transpose(1, 2), **nms)
    for path, got in zip(paths, batched):
        alone, _ = preprocess([read_image(path)], config["input_size"])
        expected = nms_reference(runner.run({Y11.input_name: alone})[outputs[0]][0].T.numpy(), **nms)
        assert len(expected) > 0, "the test needs detections to compare"
        # other batch sizes round differently in FP32; another image's boxes would be pixels away
        np.testing.assert_allclose(got.numpy(), expected, rtol=1e-4, atol=0.1, err_msg=str(path))


def test_infer_writes_class_names_and_annotated_images(tmp_path, yolo11n):
    path = tmp_path / "y.pt"
    save_ultralytics_checkpoint(yolo11n, path)
    out = tmp_path / "runs"
    assert main(Y11, ["infer", "--weights", str(path), "--input-size", "64", "--source", IMAGES, "--out", str(out),
                      "--conf", "0.3"]) == 0
    records = [__import__("json").loads(line) for line in (out / "predictions.jsonl").read_text().splitlines()]
    assert len(records) == 6 and sum(len(r["detections"]) for r in records) > 0
    assert {d["class_name"] for r in records for d in r["detections"]} <= {f"thing{i}" for i in range(80)}
    assert all(len(r["detections"]) <= 300 for r in records)
    assert len(list(out.glob("*.jpg"))) >= 5


@pytest.mark.parametrize("family", ["yolov8", "yolo11"])
def test_both_commands_take_both_families_and_refuse_a_contradicting_family_flag(family, yolov8n, yolo11n):
    module = yolov8n if family == "yolov8" else yolo11n
    weights = WeightMap(state_dict_arrays(module), f"{family}n.pt")
    for model in (V8, Y11):
        assert model.config_from_weights(weights, _args())["variant"] == f"{family}n"
    other = "yolo11" if family == "yolov8" else "yolov8"
    with pytest.raises(Exception, match=f"--family {other} disagrees with {family}n.pt"):
        V8.config_from_weights(weights, _args(family=other))


def test_weights_of_another_architecture_or_with_a_missing_key_are_one_line(tmp_path, capsys, yolov8n):
    from reference_yolov5 import random_yolov5
    torch.save(random_yolov5("n").state_dict(), tmp_path / "v5.pt")
    assert main(V8, ["build", "--weights", str(tmp_path / "v5.pt"), "-o", str(tmp_path / "e")]) == 2
    assert "these are YOLOv5 v7.0 weights (table yolov5v7, scale n); use python -m zoo.yolov5" in \
        capsys.readouterr().err
    state = yolov8n.state_dict()
    del state["model.12.m.0.cv2.bn.running_var"]
    torch.save(state, tmp_path / "broken.pt")
    assert main(V8, ["build", "--weights", str(tmp_path / "broken.pt"), "-o", str(tmp_path / "e")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert "row 12 (C2f): model.12.m.0.cv2.bn.running_var [64] is missing from the weights" in err[-1]
    assert not (tmp_path / "e").exists()


def test_the_sppf_choice_is_written_in_the_engine_header(tmp_path, yolov8n):
    from zoo.engine.engine_file import read_header
    torch.save(yolov8n.state_dict(), tmp_path / "v8n.pt")
    engine = tmp_path / "v8n.engine"
    assert main(Y11, ["build", "--weights", str(tmp_path / "v8n.pt"), "-o", str(engine), "--input-size", "64",
                      "--sppf-act", "none", "--decode", "layers"]) == 0
    header = read_header(engine)[0]
    assert (header.model, header.variant) == ("yolo11", "yolov8n")
    assert header.config["sppf_act"] is False
    assert header.config["decode"] == "layers"
