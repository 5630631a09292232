"""Every model of the zoo (zoo.registry.families(), so families added later are covered with no edit) through both
executors: the reference backend and ONNX Runtime running the ONNX writer's file. Seeded random weights with random
BatchNorm statistics, the family's default variant, a small input.

- FP32: the file passes onnx.checker; every named tensor of the network (each layer's output: the per-layer table of
  `validate`) and the final outputs agree within 1e-4 x max(1, max|ref|).
- FP16: the outputs agree within 1e-2 x max(1, max|ref|) with cosine >= 0.9999 (each executor rounds every layer to
  FP16; ONNX Runtime's accumulation order differs from PyTorch's, and the difference grows over depth).
- `export onnx` writes a file that passes onnx.checker, with opset and dynamic batch stated, whose outputs equal
  the reference backend's; YOLOv5's decode plugin written as ONNX equals the `--decode layers` network.
"""
from __future__ import annotations

import functools

import onnx
import pytest
import torch

from wts.weight_map import WeightMap
from zoo.engine.backends import ReferenceBackend
from zoo.engine.cli import main, make_parser
from zoo.engine.model import state_dict_arrays
from zoo.engine.onnx.graph import OPSET
from zoo.engine.onnx.writer import to_onnx
from zoo.engine.onnx.runner import OnnxRunner
from layers.precision import Precision
from zoo.engine.quantization import as_input
from zoo.engine.reference.executor import ReferenceExecutor
from zoo.engine.networks import define_network
from zoo.engine.pipeline import is_pipeline
from zoo.registry import families

from families import SMALL_INPUT, small_input_args

FAMILIES = families()


@functools.lru_cache(maxsize=None)
def random_setup(name: str, seed: int = 3):
    """(model, random weights, config) of a family's default variant at the smallest input it accepts among 64 px and
    its default; built once per session (random YOLO weights take seconds to calibrate their BatchNorm)."""
    model = next(f for f in FAMILIES if f.name == name).load()
    args = small_input_args(model)
    if is_pipeline(model):  # its first network, with the weights the pipeline loads (MTCNN: trained P-Net)
        stage = model.load_stages(args)[0]
        return stage.network, stage.weights, stage.config
    weights = WeightMap(state_dict_arrays(model.random_module(args, seed)), f"random {name}")
    try:
        return model, weights, model.config_from_weights(weights, args)
    except ValueError:  # the family's input size is fixed (e.g. ViT's position embedding): its default
        args = make_parser(model).parse_args(["validate"])
        return model, weights, model.config_from_weights(weights, args)


def model_network(family, precision="fp32", seed=3, **config_changes):
    model, weights, config = random_setup(family.name, seed)
    config = {**config, **config_changes}
    net, outputs = define_network(model, ReferenceBackend(), weights, config, Precision(precision))
    x = model.sample_input(config, 2, seed)
    return model, net, outputs, {model.input_name: as_input(x, precision)}


def within(got: torch.Tensor, ref: torch.Tensor, tol: float) -> tuple[bool, float]:
    got, ref = got.float(), ref.float()
    if got.shape != ref.shape:
        return False, float("inf")
    error = (got - ref).abs().max().item() if ref.numel() else 0.0
    return error <= tol * max(1.0, ref.abs().max().item() if ref.numel() else 0.0), error


# tensors inside an end-to-end head's selection (zoo/yolo/blocks/end2end.py): which of two tied anchors a top-k
# takes first differs between executors, and every tensor after it is in that order
SELECTION_INTERNALS = "/select/"


@pytest.mark.parametrize("family", FAMILIES, ids=[f.name for f in FAMILIES])
def test_every_layer_of_every_model_agrees_in_fp32(family):
    model, net, outputs, feeds = model_network(family)
    named = [t for layer in net._layers for t in layer._outputs if not t.name.startswith("(Unnamed")]
    names = [t.name for t in named]
    assert len(set(names)) == len(names), f"names used twice: {sorted({n for n in names if names.count(n) > 1})}"
    for tensor in named:
        net.mark_output(tensor)
    reference = ReferenceExecutor(net).run(feeds, capture=True)
    proto = to_onnx(net, batch=(1, 2, 4))
    onnx.checker.check_model(proto, full_check=True)
    got = OnnxRunner(proto.SerializeToString()).run(feeds)
    config = random_setup(family.name)[2]
    bad = []
    for tensor in named:
        if SELECTION_INTERNALS in tensor.name:  # index order among tied scores: the rows are compared below
            continue
        output = outputs.index(tensor.name) if tensor.name in outputs else None
        if output is not None:  # end-to-end rows of equal scores may come in another order: face the reference's
            got[tensor.name] = model.aligned_output(config, output, torch.as_tensor(got[tensor.name]),
                                                    torch.as_tensor(reference[tensor.name]))
        ok, error = within(got[tensor.name], reference[tensor.name], 1e-4)
        if not ok:
            bad.append(f"{tensor.name}: max error {error:.3e}")
    assert len(named) > 3 and set(outputs) <= {t.name for t in named}
    assert not bad, f"{family.name}: {len(bad)} of {len(named)} tensors differ; first: {bad[:3]}"


# families whose output rows are a top-k selection (score-sorted): FP16 rounding, which differs between executors,
# reorders and swaps near-equal candidates, so their FP16 outputs are compared as the sorted scores they keep
TOP_K_ROWS = {"rtdetr": 4, "yolo26": 4, "yolov10": 4}   # the score column of (B, K, 6 + extra) rows


@pytest.mark.parametrize("family", FAMILIES, ids=[f.name for f in FAMILIES])
def test_every_model_agrees_in_fp16(family):
    model, net, outputs, feeds = model_network(family, "fp16")
    reference = ReferenceExecutor(net).run(feeds)
    got = OnnxRunner(to_onnx(net).SerializeToString()).run(feeds)
    if family.name in TOP_K_ROWS:
        column = TOP_K_ROWS[family.name]
        reference, got = ({n: r[n][..., column].sort(-1).values for n in outputs} for r in (reference, got))
    fp32 = None
    for name in outputs:
        ok, error = within(got[name], reference[name], 1e-2)
        cosine = torch.nn.functional.cosine_similarity(got[name].double().flatten(),
                                                       reference[name].double().flatten(), dim=0).item()
        if not ok:  # FP16 itself may be that far from FP32 (a trained detector's steep sigmoid): then ONNX
            # Runtime's FP16 must be no further from the FP32 truth than twice the reference backend's FP16 is
            fp32 = fp32 or _fp32_outputs(family, outputs)
            ref_error = (reference[name].double() - fp32[name]).abs().max().item()
            ok, error = within(got[name], fp32[name], 2 * max(ref_error, 1e-2))
        assert ok and cosine >= 0.9999, f"{family.name} {name}: max error {error:.3e}, cosine {cosine:.6f}"


def _fp32_outputs(family, outputs) -> dict:
    _, net, _, feeds = model_network(family, "fp32")
    result = ReferenceExecutor(net).run(feeds)
    if family.name in TOP_K_ROWS:
        return {name: result[name][..., TOP_K_ROWS[family.name]].sort(-1).values.double() for name in outputs}
    return {name: result[name].double() for name in outputs}


def test_yolov5_decode_plugin_as_onnx_equals_the_layers_form():
    yolov5 = next(f for f in FAMILIES if f.name == "yolov5")
    results = {}
    for decode in ("plugin", "layers"):
        model, net, outputs, feeds = model_network(yolov5, decode=decode)
        kinds = {type(layer).__name__ for layer in net._layers}
        assert ("IPluginV3Layer" in kinds) == (decode == "plugin")
        results[decode] = OnnxRunner(to_onnx(net).SerializeToString()).run(feeds)[outputs[0]]
    ok, error = within(results["plugin"], results["layers"], 1e-4)
    assert ok, f"decode plugin's ONNX form differs from the layers form by {error:.3e}"


@pytest.mark.parametrize("precision", ["fp32", "fp16"])
def test_export_onnx_writes_a_checked_file_equal_to_the_reference(tmp_path, precision):
    out = tmp_path / "lenet.onnx"
    lenet = next(f for f in FAMILIES if f.name == "lenet")
    assert main(lenet.load(), ["export", "onnx", "-o", str(out), "--seed", "3", "--batch", "1:4:8",
                               "--precision", precision]) == 0
    model = onnx.load(out)
    onnx.checker.check_model(model, full_check=True)
    assert [o.version for o in model.opset_import if o.domain == ""] == [OPSET]
    assert model.graph.input[0].type.tensor_type.shape.dim[0].dim_param == "batch"
    meta = {p.key: p.value for p in model.metadata_props}
    assert meta["batch_range"] == "1:4:8" and meta["precision"] == precision and meta["model"] == "lenet"
    _, net, outputs, feeds = model_network(lenet, precision)  # the same seeded weights
    expected = ReferenceExecutor(net).run(feeds)[outputs[0]]
    got = OnnxRunner(out.read_bytes()).run(feeds)[outputs[0]]
    ok, error = within(got, expected, 1e-4 if precision == "fp32" else 1e-2)
    assert ok, f"export {precision}: max error {error:.3e}"


def test_export_refuses_to_write_over_its_weights(tmp_path, capsys):
    weights = tmp_path / "w.onnx"
    weights.write_bytes(b"not weights")
    assert main(family_model("mlp"), ["export", "onnx", "--weights", str(weights), "-o", str(weights)]) == 2
    assert "would overwrite" in capsys.readouterr().err
    assert weights.read_bytes() == b"not weights"


def test_onnx_engine_file_builds_and_infers(tmp_path, capsys):
    engine = tmp_path / "m.engine"
    mlp = family_model("mlp")
    assert main(mlp, ["build", "--backend", "onnx", "-o", str(engine)]) == 0
    from zoo.engine.engine_file import read_engine
    header, payload = read_engine(engine)
    assert header.backend == "onnx"
    onnx.checker.check_model(onnx.load_model_from_string(payload))
    import numpy as np
    source = tmp_path / "x.npy"
    np.save(source, np.ones((2, 1, 1, 1), np.float32))
    capsys.readouterr()
    assert main(mlp, ["infer", "--engine", str(engine), "--source", str(source)]) == 0
    assert len(capsys.readouterr().out.strip().splitlines()) == 2


def test_a_model_with_external_data_is_refused():
    from onnx import TensorProto, helper
    from zoo.engine.onnx.runner import OnnxModelError
    weight = helper.make_tensor("w", TensorProto.FLOAT, [1], [1.0])
    weight.data_location = TensorProto.EXTERNAL
    entry = weight.external_data.add()
    entry.key, entry.value = "location", "../../etc/passwd"
    del weight.float_data[:]
    graph = helper.make_graph([helper.make_node("Add", ["x", "w"], ["y"])], "g",
                              [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1])], [weight])
    with pytest.raises(OnnxModelError, match="external files"):
        OnnxRunner(helper.make_model(graph).SerializeToString())


def family_model(name):
    return next(f for f in FAMILIES if f.name == name).load()


@pytest.mark.parametrize("name", ["lenet", "resnet"])
def test_int8_q_dq_networks_agree(name):
    """Explicit quantization (QuantizeLinear/DequantizeLinear, per-channel weights) through both executors. An FP16
    value one rounding step apart can land on the other side of an INT8 step, so the bound is a cosine."""
    family = next(f for f in FAMILIES if f.name == name)
    model, weights, config = random_setup(name)
    probe = Precision("fp32")
    define_network(model, ReferenceBackend(), weights, config, probe)
    scales = {tensor: 4.0 / 127 for _, tensor in probe.seen}
    net, outputs = define_network(model, ReferenceBackend(), weights, config, Precision("int8", scales))
    assert any(type(layer).__name__ == "IQuantizeLayer" for layer in net._layers)
    feeds = {model.input_name: as_input(model.sample_input(config, 2, 3), "int8")}
    reference = ReferenceExecutor(net).run(feeds)[outputs[0]]
    got = OnnxRunner(to_onnx(net).SerializeToString()).run(feeds)[outputs[0]]
    cosine = torch.nn.functional.cosine_similarity(got.double().flatten(), reference.double().flatten(), dim=0).item()
    assert cosine >= 0.999, f"{family.name} int8: cosine {cosine:.6f}"


def test_validate_and_bench_run_on_the_onnx_backend(capsys):
    lenet = next(f for f in FAMILIES if f.name == "lenet").load()
    assert main(lenet, ["validate", "--backend", "onnx"]) == 0
    captured = capsys.readouterr()
    assert "ONNX backend" in captured.err and "layers pass (tolerance 0.0001)" in captured.out
    assert main(lenet, ["bench", "--backend", "onnx", "--iterations", "2", "--warmup", "0"]) == 0
    assert "ONNX Runtime" in capsys.readouterr().out


def test_the_batch_range_is_enforced_like_an_optimization_profile():
    _, net, outputs, feeds = model_network(next(f for f in FAMILIES if f.name == "lenet"))
    runner = OnnxRunner(to_onnx(net, batch=(1, 1, 2)).SerializeToString())
    (name, x), = feeds.items()
    assert runner.run({name: x[:2]})[outputs[0]].shape[0] == 2
    with pytest.raises(ValueError, match="batch 3, outside the engine.s optimization profile 1..2"):
        runner.run({name: x[[0, 1, 1]]})
