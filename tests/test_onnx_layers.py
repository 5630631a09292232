"""Every layer type of the reference backend, over the shape and parameter grid of tests/test_reference_ops.py, run
through both executors: the reference backend (PyTorch) and ONNX Runtime executing the ONNX writer's translation.

The grid is not copied: each test of test_reference_ops that executes a network is collected here again, with its
`execute` replaced by one that also writes the network as ONNX, runs it with ONNX Runtime, and compares every output
with the reference backend's: shapes and types equal, FP32 within 1e-5 x max(1, max|ref|), networks with FP16
tensors within two FP16 steps (2^-9 x max(1, max|ref|): both executors compute each layer in FP32 and round once,
but an accumulation order can move one rounding), integers and booleans exactly. A layer type
the reference backend gains (or a grid case it gains) runs through both executors here with no edit; a layer class
without an ONNX translation fails `test_every_reference_layer_type_has_an_onnx_translation` by name.
"""
from __future__ import annotations

import inspect

import numpy as np
import onnx
import pytest
import torch

import test_reference_ops as grid
from zoo.trt_api import trt
from zoo.trt_api import plugins as onnx_plugins
from zoo.engine.onnx.graph import OPSET, OnnxExportError
from zoo.engine.onnx.writer import to_onnx
from zoo.engine.onnx.layers import TRANSLATORS
from zoo.engine.onnx.runner import OnnxRunner
from zoo.engine.reference.network import LAYER_CLASSES

FP32_TOL = 1e-5
FP16_TOL = 2.0 ** -9
_reference_execute = grid.execute
_translated: set[str] = set()   # layer classes that went through both executors in this session


def compare_outputs(name: str, got: torch.Tensor, ref: torch.Tensor, fp16: bool = False) -> None:
    assert tuple(got.shape) == tuple(ref.shape), f"{name}: ONNX Runtime shape {tuple(got.shape)}, reference " \
                                                 f"{tuple(ref.shape)}"
    assert got.dtype == ref.dtype, f"{name}: ONNX Runtime type {got.dtype}, reference {ref.dtype}"
    if not ref.is_floating_point():
        assert torch.equal(got, ref), f"{name}: {(got != ref).sum().item()} elements differ"
        return
    g, r = got.double(), ref.double()
    assert torch.equal(g.isnan(), r.isnan()), f"{name}: NaN in different places"
    finite = ~r.isnan()
    scale = max(1.0, r[finite & r.isfinite()].abs().max().item() if finite.any() else 0.0)
    tol = (FP16_TOL if fp16 or ref.dtype == torch.float16 else FP32_TOL) * scale
    error = (g[finite] - r[finite]).abs().nan_to_num(nan=float("inf"), posinf=float("inf"))
    error[g[finite] == r[finite]] = 0  # equal infinities
    worst = error.max().item() if error.numel() else 0.0
    assert worst <= tol, f"{name}: max |onnxruntime - reference| = {worst:.3e} > {tol:.3e}"


def run_both(net, outputs, feeds) -> list[torch.Tensor]:
    """The reference backend's results (checked by the grid as before), after holding ONNX Runtime's equal."""
    values = _reference_execute(net, outputs, feeds)
    outputs = outputs if isinstance(outputs, (list, tuple)) else [outputs]
    model = to_onnx(net)
    onnx.checker.check_model(model, full_check=True)
    got = OnnxRunner(model.SerializeToString()).run(feeds)
    fp16 = any(t.dtype == trt.float16 for layer in net._layers for t in layer._outputs)
    for tensor, ref in zip(outputs, values):
        compare_outputs(tensor.name, got[tensor.name], ref, fp16)
    _translated.update(type(layer).__name__ for layer in net._layers)
    return values


@pytest.fixture(autouse=True)
def both_executors(monkeypatch):
    monkeypatch.setattr(grid, "execute", run_both)


def _executes_a_network(func) -> bool:
    source = inspect.getsource(func)
    return "execute(" in source or "run_one(" in source


# The grid: every test of test_reference_ops that runs a network, collected again in this module.
GRID_TESTS = sorted(name for name, obj in vars(grid).items()
                    if name.startswith("test_") and inspect.isfunction(obj) and _executes_a_network(obj))
for _name in GRID_TESTS:
    globals()[_name] = getattr(grid, _name)


# The grid's test plugin has an ONNX form too, registered the way plugin packages register theirs.
def _scale_add_onnx(g, xs, ys, *, specs, name, alpha, offsets):
    (shape, dtype), = specs
    scaled = g.op("Mul", [xs[0], g.const(np.float32(alpha), f"{name}/alpha")], f"{name}/scaled")
    g.node("Add", [scaled, g.const(offsets.astype(np.float32), f"{name}/offsets")], name, outputs=[ys[0]])
    g.node("ReduceSum", [ys[0], g.int64s([1], f"{name}/axis")], f"{name}/sum", outputs=[ys[1]], keepdims=0)


onnx_plugins.register_onnx_form("test::scale_add", _scale_add_onnx)


# ----------------------------------------------------------------------------------------------------------------
# coverage: a layer type without a translation, or one the grid never ran through both executors, fails loudly


def test_every_reference_layer_type_has_an_onnx_translation():
    missing = sorted(set(LAYER_CLASSES) - set(TRANSLATORS))
    assert not missing, f"reference-backend layer classes with no ONNX translation (add them to " \
                        f"zoo/engine/onnx/layers.py TRANSLATORS): {missing}"


def test_zz_every_layer_type_went_through_both_executors(request):
    """Runs after the grid (last in this module); meaningful only when the whole grid ran."""
    selected = {i.originalname for i in request.session.items if getattr(i, "module", None) is request.module}
    if not set(GRID_TESTS) <= selected:
        pytest.skip("only part of the grid was selected")
    never = sorted(set(LAYER_CLASSES) - _translated)
    assert not never, f"layer classes the differential grid never ran through ONNX Runtime: {never}; add a case " \
                      f"to tests/test_reference_ops.py that executes one"


def test_a_layer_without_translation_is_an_error_naming_it(monkeypatch):
    net, x = grid.network(("x", trt.float32, (1, 3)))
    layer = net.add_identity(x)
    layer.name = "my_identity"
    net.mark_output(layer.get_output(0))
    monkeypatch.delitem(TRANSLATORS, "IIdentityLayer")
    with pytest.raises(OnnxExportError, match="'my_identity' \\(IIdentityLayer\\) has no ONNX form"):
        to_onnx(net)


def test_a_plugin_without_onnx_form_is_an_error_naming_it():
    from zoo.trt_api import plugins as ref_plugin
    ref_plugin.register("test::no_onnx", shapes=lambda inputs: [inputs[0]], forward=lambda x: x)
    net, x = grid.network(("x", trt.float32, (1, 3)))
    layer = net.add_plugin(ref_plugin.op.test.no_onnx(x))
    layer.name = "custom"
    net.mark_output(layer.get_output(0))
    with pytest.raises(ValueError, match="'custom'.*'test::no_onnx' has no ONNX form"):
        to_onnx(net)


def test_opset_and_dynamic_batch_are_stated():
    net, x = grid.network(("x", trt.float32, (-1, 3, 4, 4)))
    y = net.add_activation(x, trt.ActivationType.RELU).get_output(0)
    y.name = "y"
    net.mark_output(y)
    model = to_onnx(net, batch=(1, 4, 8))
    assert [o.version for o in model.opset_import if o.domain == ""] == [OPSET]
    dims = model.graph.input[0].type.tensor_type.shape.dim
    assert dims[0].dim_param == "batch" and [d.dim_value for d in dims[1:]] == [3, 4, 4]
    runner = OnnxRunner(model.SerializeToString())
    for batch in (1, 5):
        x = torch.randn(batch, 3, 4, 4)
        torch.testing.assert_close(runner.run({"x": x})["y"], x.relu())


def test_the_onnx_backend_records_with_the_conformance_checked_network():
    """tests/test_conformance.py holds the reference backend's classes to TensorRT's API; the ONNX backend's network
    must be one of those, not a look-alike that escapes the check."""
    from zoo.engine.backends import choose_backend
    from zoo.engine.reference.network import INetworkDefinition
    net = choose_backend("onnx").create_network()
    assert type(net) is INetworkDefinition


# ----------------------------------------------------------------------------------------------------------------
# edge cases the grid does not reach: where the two readings of TensorRT are most likely to part


def _both(inputs, build, feeds):
    net, *tensors = grid.network(*inputs)
    outs = build(net, *tensors)
    return run_both(net, outs if isinstance(outs, list) else [outs], feeds)


def _resize(mode, transform, scales=None, shape=None):
    def build(net, t):
        layer = net.add_resize(t)
        layer.resize_mode = getattr(trt.InterpolationMode, mode)
        layer.coordinate_transformation = getattr(trt.ResizeCoordinateTransformation, transform)
        if scales is not None:
            layer.scales = scales
        else:
            layer.shape = shape
        return layer.get_output(0)
    return build


@pytest.mark.parametrize("scales,shape", [((1, 1, 1.5, 0.6), None), ((1, 1, 0.5, 2.5), None), ((1, 1, 3, 3), None),
                                          (None, (1, 2, 3, 9)), (None, (1, 2, 1, 1)), (None, (1, 2, 10, 1))])
@pytest.mark.parametrize("mode,transform", [("NEAREST", "ASYMMETRIC"), ("LINEAR", "HALF_PIXEL"),
                                            ("LINEAR", "ALIGN_CORNERS")])
def test_resize_fractional_scales_and_single_pixel(mode, transform, scales, shape):
    x = grid.rand(1, 2, 7, 5, seed=60)
    _both([("x", trt.float32, (1, 2, 7, 5))], _resize(mode, transform, scales, shape), {"x": x})


@pytest.mark.parametrize("kind", ["MAX", "AVERAGE"])
@pytest.mark.parametrize("window,stride,pre,post", [((3, 3), (2, 2), (1, 1), (1, 1)), ((2, 2), (2, 2), (0, 0), (0, 0)),
                                                    ((3, 3), (2, 2), (0, 0), (0, 0))])
def test_pooling_round_up_with_partial_windows(kind, window, stride, pre, post):
    def build(net, t):
        layer = net.add_pooling_nd(t, getattr(trt.PoolingType, kind), window)
        layer.stride_nd, layer.pre_padding, layer.post_padding = stride, pre, post
        layer.padding_mode = trt.PaddingMode.EXPLICIT_ROUND_UP
        return layer.get_output(0)
    _both([("x", trt.float32, (1, 2, 7, 5))], build, {"x": grid.rand(1, 2, 7, 5, seed=61)})


@pytest.mark.parametrize("op", ["DIV", "FLOOR_DIV", "SUB", "MIN", "MAX", "PROD"])
def test_integer_division_signs(op):
    a = torch.tensor([[7, -7, 9, -9, 0, 5]], dtype=torch.int32)
    b = torch.tensor([[2, 2, -4, -4, 3, -2]], dtype=torch.int32)
    _both([("a", trt.int32, (1, 6)), ("b", trt.int32, (1, 6))],
          lambda net, ta, tb: net.add_elementwise(ta, tb, getattr(trt.ElementWiseOperation, op)).get_output(0),
          {"a": a, "b": b})


@pytest.mark.parametrize("kind", sorted(grid.ACTIVATION_DEFS))
@pytest.mark.parametrize("dtype", ["float32", "float16"])
def test_activation_far_from_zero(kind, dtype):
    """Large inputs (exp overflows in a naive formula) and FP16 inputs."""
    x = torch.tensor([[-100.0, -20.0, -1.5, 0.0, 0.75, 20.0, 60.0, 1000.0 if dtype == "float32" else 600.0]])

    def build(net, t):
        layer = net.add_activation(t, getattr(trt.ActivationType, kind))
        layer.alpha, layer.beta = 0.9, 1.1
        return layer.get_output(0)
    _both([("x", getattr(trt, dtype), (1, 8))], build, {"x": x.to(getattr(torch, dtype))})


def test_slice_with_negative_strides():
    x = grid.rand(1, 2, 7, 5, seed=62)
    _both([("x", trt.float32, (1, 2, 7, 5))],
          lambda net, t: net.add_slice(t, (0, 1, 6, 4), (1, 1, 4, 3), (1, -1, -2, -2)).get_output(0), {"x": x})
