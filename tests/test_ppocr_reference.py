"""PP-OCR's reference modules, with weights mapped from the trained ONNX files, against ONNX Runtime on the same
files: end to end and at tensors both can name, on inputs made from real photographs, at FP32 1e-4."""
import cv2
import numpy as np
import pytest
import torch

from zoo import assets
from zoo.engine.checkpoint import CheckpointError
from zoo.ppocr.onnx_import import import_paddle_onnx, reference_from_state
from zoo.ppocr.synth import cjk_font_available, scene

onnx = pytest.importorskip("onnx")
ort = pytest.importorskip("onnxruntime")
FILES = ["ppocrv5_det", "ppocrv5_cls", "ppocrv5_rec", "ppocrv4_det", "ppocrv4_cls", "ppocrv4_rec"]
pytestmark = pytest.mark.skipif(not all(assets.available(f) for f in FILES + ["coffee"]) or not cjk_font_available(),
                                reason="the PP-OCR wheels or the CJK font are not installed (make setup)")


def photo_input(shape):
    """(N, 3, H, W) from a photograph with text rendered on it: the whole page for one item, else its text lines
    (one upside down) cropped and resized; normalised to [-1, 1] as the recognizer's pipeline does."""
    n, _, h, w = shape
    _, image, truths = scene(1)
    if n == 1:
        items = [cv2.resize(image, (w, h))]
    else:
        items = [cv2.resize(image[t["box"][0][1]:t["box"][2][1], t["box"][0][0]:t["box"][2][0]], (w, h))
                 for t in truths[:n]]
    return ((np.stack(items).astype(np.float32) / 255 - 0.5) / 0.5).transpose(0, 3, 1, 2).copy()


def run_onnx(path, x, extra=()):
    model = onnx.load(str(path))
    for name in extra:
        model.graph.output.append(onnx.helper.make_empty_tensor_value_info(name))
    session = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    return session.run(None, {session.get_inputs()[0].name: x})


def tensor_feeding(path, op_type, index=0):
    """The name of the tensor that feeds the `index`-th node of `op_type` in the file's graph."""
    return [n.input[0] for n in onnx.load(str(path)).graph.node if n.op_type == op_type][index]


SHAPES = {"det": (1, 3, 256, 384), "cls": (3, 3, 48, 192), "rec": (2, 3, 48, 256)}


@pytest.mark.parametrize("asset", FILES)
def test_reference_module_equals_onnx_runtime(asset):
    path = assets.asset_path(asset)
    state, config = import_paddle_onnx(str(path))
    module = reference_from_state(state, config)
    stage = config["stage"]
    x = photo_input(SHAPES[stage])
    captured = {}
    if stage == "det":   # the neck's four upsampled levels, concatenated
        probes = {tensor_feeding(path, "Conv", -1): module.neck}
    elif stage == "rec":  # the backbone's output (before the pool) and the neck's (before the classifier)
        probes = {tensor_feeding(path, "AveragePool"): module.backbone,
                  tensor_feeding(path, "Squeeze", -1): module.neck}
    else:                 # the last squeeze-excitation's gate input
        probes = {}
    hooks = [m.register_forward_hook(lambda m, i, o, key=k: captured.__setitem__(key, o)) for k, m in probes.items()]
    with torch.no_grad():
        ours = module(torch.from_numpy(x)).numpy()
    for h in hooks:
        h.remove()
    theirs, *inner = run_onnx(path, x, list(probes))
    assert ours.shape == theirs.shape
    np.testing.assert_allclose(ours, theirs, atol=1e-4, rtol=0)
    for name, value in zip(probes, inner):
        # inner tensors reach |x| ~ 10-100: 1e-4 of their largest magnitude
        np.testing.assert_allclose(captured[name].numpy().reshape(value.shape), value,
                                   atol=1e-4 * max(1.0, float(np.abs(value).max())), rtol=0, err_msg=name)
    assert theirs.max() > 0.5  # a real signal: text found, characters or a direction recognised


def test_stage_mismatch_and_damaged_files_are_one_line(tmp_path):
    det = assets.asset_path("ppocrv5_det")
    with pytest.raises(CheckpointError, match="text detection network, but a text recognition"):
        import_paddle_onnx(str(det), "rec")
    damaged = tmp_path / "det.onnx"
    damaged.write_bytes(det.read_bytes()[:100000])
    with pytest.raises(CheckpointError, match="det.onnx"):
        import_paddle_onnx(str(damaged))
    foreign = tmp_path / "foreign.onnx"   # a valid ONNX file with no Paddle weights at all
    graph = onnx.helper.make_graph([onnx.helper.make_node("Relu", ["x"], ["y"])], "g",
                                   [onnx.helper.make_tensor_value_info("x", onnx.TensorProto.FLOAT, [1])],
                                   [onnx.helper.make_tensor_value_info("y", onnx.TensorProto.FLOAT, [1])])
    onnx.save(onnx.helper.make_model(graph), str(foreign))
    with pytest.raises(CheckpointError, match="not a PP-OCR export"):
        import_paddle_onnx(str(foreign))
