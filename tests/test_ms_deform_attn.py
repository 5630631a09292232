"""zoo::ms_deform_attn: the PyTorch reference against multi-scale deformable attention written out corner by corner
(tests/bilinear_sampling.py, numpy float64, no grid_sample), and every other form held to the reference: the plugin
on the reference backend (built, saved and loaded, dynamic batch), the plain-layer form (a grid sample per level) on
the reference backend and on ONNX Runtime, the plugin's ONNX form on ONNX Runtime, and the Triton kernel under
TRITON_INTERPRET=1. Sampling points include points far outside the maps, on their outer edges (0 and 1), on pixel
centres and on pixel edges; several levels of different sizes; B = 1 and 2; FP32 and FP16."""
import numpy as np
import pytest
import torch

import bilinear_sampling
from plugins.ms_deform_attn import OP_ID, add_ms_deform_attn, ms_deform_attn_reference
from plugins.ms_deform_attn.reference import attention_shapes, level_shapes
from zoo.trt_api import trt
from zoo.trt_api import plugins as ref_plugin
from zoo.trt_api.plugins import TensorSpec

needs_interpreter = pytest.mark.skipif(
    not __import__("os").environ.get("TRITON_INTERPRET"), reason="kernel tests run under TRITON_INTERPRET=1")

LEVELS = ((5, 6), (3, 3), (1, 2))   # three levels of different sizes, one of a single row
TORCH_TYPES = {torch.float32: trt.float32, torch.float16: trt.float16}


def inputs(batch, queries, heads, channels, points, levels=LEVELS, dtype=torch.float32, seed=0):
    """value, sampling locations and softmaxed weights; a quarter of the points on special coordinates: the maps'
    outer edges (0, 1), pixel centres ((k + 0.5) / W), pixel edges (k / W), and far outside (-1.5, 2.5)."""
    g = torch.Generator().manual_seed(seed)
    cells = sum(h * w for h, w in levels)
    value = torch.randn(batch, cells, heads, channels, generator=g)
    loc = torch.rand(batch, queries, heads, len(levels), points, 2, generator=g) * 1.6 - 0.3
    for level, (h, w) in enumerate(levels):
        for axis, size in ((0, w), (1, h)):
            special = torch.tensor([0.0, 1.0, -1.5, 2.5, *[(k + 0.5) / size for k in range(size)],
                                    *[k / size for k in range(size + 1)]])
            view = loc[..., level, :, axis]
            pick = torch.rand(view.shape, generator=g) < 0.25
            view[pick] = special[torch.randint(len(special), (int(pick.sum()),), generator=g)]
    weights = torch.randn(batch, queries, heads, len(levels), points, generator=g)
    weights = weights.flatten(3).softmax(-1).view_as(weights)
    return value.to(dtype), loc.to(dtype), weights.to(dtype)


def independent(value, loc, weights, levels=LEVELS) -> torch.Tensor:
    return torch.from_numpy(bilinear_sampling.ms_deform_attn(value.double().numpy(), loc.double().numpy(),
                                                             weights.double().numpy(), levels))


@pytest.mark.parametrize("batch,queries,heads,channels,points,levels", [
    (1, 9, 2, 4, 3, LEVELS), (2, 5, 3, 8, 4, LEVELS), (2, 4, 1, 2, 1, ((4, 4),)),
    (1, 6, 2, 3, 2, ((2, 7), (6, 1), (3, 4), (1, 1)))])
def test_reference_equals_the_definition_written_out(batch, queries, heads, channels, points, levels):
    value, loc, weights = inputs(batch, queries, heads, channels, points, levels, seed=batch * 7 + heads)
    got = ms_deform_attn_reference(value, loc, weights, levels)
    assert got.shape == (batch, queries, heads * channels) and got.dtype == torch.float32
    torch.testing.assert_close(got.double(), independent(value, loc, weights, levels), rtol=1e-5, atol=1e-5)


def test_reference_in_fp16_computes_in_fp32_and_rounds_once():
    value, loc, weights = inputs(2, 6, 2, 4, 3, dtype=torch.float16, seed=3)
    got = ms_deform_attn_reference(value, loc, weights, LEVELS)
    assert got.dtype == torch.float16
    expected = independent(value, loc, weights)  # from the same FP16 inputs, in float64
    torch.testing.assert_close(got.double(), expected, rtol=2 ** -10, atol=2 ** -10)


@pytest.mark.parametrize("shapes,match", [((), "1..4"), (((4, 4), (2, 2), (1, 1), (1, 1), (1, 1)), "1..4"),
                                          (((4, 0),), "integers in 1"), (((4, 2.0),), "integers in 1"),
                                          (((True, 2),), "integers in 1"), ((4, 4, 2), "1..4")])
def test_bad_spatial_shapes_are_named(shapes, match):
    with pytest.raises(ValueError, match=match):
        level_shapes(shapes)


def test_shape_and_dtype_checks_name_the_mismatch():
    value = TensorSpec((1, 41, 2, 4), trt.float32)
    loc, weights = TensorSpec((1, 5, 2, 3, 4, 2), trt.float32), TensorSpec((1, 5, 2, 3, 4), trt.float32)
    assert attention_shapes([value, loc, weights], spatial_shapes=np.int32([5, 6, 3, 3, 1, 2])) == [
        TensorSpec((1, 5, 8), trt.float32)]
    with pytest.raises(ValueError, match="do not fit 3 levels"):
        attention_shapes([TensorSpec((1, 40, 2, 4), trt.float32), loc, weights], spatial_shapes=LEVELS)
    with pytest.raises(ValueError, match="do not fit 3 levels"):
        attention_shapes([value, TensorSpec((1, 5, 2, 2, 4, 2), trt.float32), weights], spatial_shapes=LEVELS)
    with pytest.raises(ValueError, match="must all be FP32 or all FP16"):
        attention_shapes([value, TensorSpec((1, 5, 2, 3, 4, 2), trt.float16), weights], spatial_shapes=LEVELS)
    with pytest.raises(ValueError, match="must be value \\(B, S, M, D\\)"):
        ms_deform_attn_reference(torch.zeros(1, 41, 8), torch.zeros(1, 5, 2, 3, 4, 2), torch.zeros(1, 5, 2, 3, 4),
                                 LEVELS)


def _network(backend_net, value, loc, weights, form, levels=LEVELS):
    dtype = TORCH_TYPES[value.dtype]
    tv = backend_net.add_input("value", dtype, (-1, *value.shape[1:]))
    tl = backend_net.add_input("locations", dtype, (-1, *loc.shape[1:]))
    tw = backend_net.add_input("weights", dtype, (-1, *weights.shape[1:]))
    y = add_ms_deform_attn(backend_net, tv, tl, tw, spatial_shapes=levels, name="decoder.layers.0.cross_attn",
                           form=form)
    assert tuple(y.shape) == (-1, loc.shape[1], value.shape[2] * value.shape[3]) and y.dtype == dtype
    assert y.name == "decoder.layers.0.cross_attn"
    backend_net.mark_output(y)
    return {"value": value, "locations": loc, "weights": weights}


@pytest.mark.parametrize("form", ["plugin", "layers"])
def test_both_forms_on_the_reference_backend_saved_loaded_with_dynamic_batch(form):
    from zoo.engine.backend_api import BuildOptions
    from zoo.engine.backends import ReferenceBackend

    assert ref_plugin.lookup(OP_ID).forward.__module__ == "plugins.ms_deform_attn.reference"
    backend = ReferenceBackend()
    net = backend.create_network()
    value, loc, weights = inputs(2, 7, 2, 4, 3, seed=11)
    _network(net, value, loc, weights, form)
    runner = backend.load(backend.build(net, BuildOptions(input_name="value", batch=(1, 2, 2))))
    for batch in (1, 2):
        feeds = {"value": value[:batch], "locations": loc[:batch], "weights": weights[:batch]}
        (got,) = runner.run(feeds).values()
        torch.testing.assert_close(got, ms_deform_attn_reference(*feeds.values(), LEVELS), rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float16])
@pytest.mark.parametrize("form", ["plugin", "layers"])
def test_onnx_runtime_runs_both_forms(form, dtype):
    """`plugin`: the ONNX form written for the plugin layer; `layers`: the grid-sample layers' translations."""
    import onnx

    from zoo.engine.onnx.network import INetworkDefinition
    from zoo.engine.onnx.runner import OnnxRunner
    from zoo.engine.onnx.writer import to_onnx

    net = INetworkDefinition()
    value, loc, weights = inputs(2, 6, 2, 4, 3, dtype=dtype, seed=5)
    _network(net, value, loc, weights, form)
    model = to_onnx(net)
    onnx.checker.check_model(model, full_check=True)
    assert ("GridSample" in {n.op_type for n in model.graph.node})
    runner = OnnxRunner(model.SerializeToString())
    for batch in (1, 2):
        feeds = {"value": value[:batch], "locations": loc[:batch], "weights": weights[:batch]}
        (got,) = runner.run(feeds).values()
        assert got.dtype == dtype
        tol = 1e-5 if dtype == torch.float32 else 2 ** -9
        torch.testing.assert_close(got, ms_deform_attn_reference(*feeds.values(), LEVELS), rtol=tol, atol=tol)


def test_unknown_form_is_named():
    from zoo.engine.reference.network import INetworkDefinition

    net = INetworkDefinition()
    value, loc, weights = inputs(1, 2, 1, 2, 1)
    with pytest.raises(ValueError, match="form must be one of \\('plugin', 'layers'\\), got 'grid'"):
        _network(net, value, loc, weights, "grid")


@needs_interpreter
@pytest.mark.parametrize("dtype", [torch.float32, torch.float16])
@pytest.mark.parametrize("batch,queries,heads,channels,points,levels", [
    (1, 20, 2, 4, 3, LEVELS),                     # queries beyond one block, a partial last block
    (2, 5, 3, 5, 2, ((2, 7), (6, 1), (3, 4), (1, 1))),   # four levels, channels not a power of two
    (2, 3, 1, 1, 1, ((1, 1),))])                  # one cell, one channel
def test_kernel_equals_reference(batch, queries, heads, channels, points, levels, dtype, monkeypatch):
    """Every output element written (the output is allocated full of NaN), FP16 rounded once from FP32."""
    from plugins.ms_deform_attn.kernel import ms_deform_attn_triton

    empty = torch.empty
    monkeypatch.setattr(torch, "empty", lambda *s, **k: empty(*s, **k).fill_(float("nan")))
    value, loc, weights = inputs(batch, queries, heads, channels, points, levels, dtype=dtype, seed=queries)
    got = ms_deform_attn_triton(value, loc, weights, levels)
    assert got.dtype == dtype and not got.isnan().any()
    expected = ms_deform_attn_reference(value, loc, weights, levels)
    tol = dict(rtol=1e-5, atol=1e-5) if dtype == torch.float32 else dict(rtol=2 ** -10, atol=2 ** -10)
    torch.testing.assert_close(got.float(), expected.float(), **tol)


@needs_interpreter
def test_kernel_reads_far_away_points_as_zero():
    """Locations of +-1e9 and beyond the int32 range of pixel coordinates contribute nothing (no wrap-around)."""
    from plugins.ms_deform_attn.kernel import ms_deform_attn_triton

    value, loc, weights = inputs(1, 4, 1, 3, 2, ((3, 3),), seed=2)
    loc[0, :2, 0, 0, 0] = torch.tensor([[1e9, 0.5], [-3e9, 1e12]])
    got = ms_deform_attn_triton(value, loc, weights, ((3, 3),))
    torch.testing.assert_close(got, ms_deform_attn_reference(value, loc, weights, ((3, 3),)), rtol=1e-5, atol=1e-5)


def test_tensorrt_registration_and_sm90_ptx_against_a_stand_in(run_fresh):
    """Without TensorRT or a GPU: trt_plugin.py's shape function, autotune and AOT implementation, and
    add_ms_deform_attn's TensorRT branch, against the stand-in `tensorrt.plugin` of test_yolo_decode (annotations as
    objects, exact attribute types and keyword order, shape expressions on the left). The AOT implementation
    compiles the kernel for sm_90 with the PTX ISA capped at 9.0; the entry takes exactly (value, locations,
    weights, Q, out), TensorRT's order of inputs, int32 scalars, outputs; the launch grid is (Q blocks, heads, B)."""
    pytest.importorskip("triton", reason="triton is not installed")
    from test_yolo_decode import _TENSORRT_STAND_IN
    stand_in = _TENSORRT_STAND_IN.replace('DEFS["zoo::yolo_decode"]', 'DEFS["zoo::ms_deform_attn"]').replace(
        "yolo_decode=op_call", "ms_deform_attn=op_call").replace(
        "import plugins.yolo_decode,", "import plugins.ms_deform_attn,").replace(
        "parameters.values())[1:]", "parameters.values())[3:]")  # three tensor inputs before the attribute
    proc = run_fresh("import os\nos.environ['ZOO_PTX_VERSION'] = '90'\n" + stand_in + """
import re
from plugins.ms_deform_attn import add_ms_deform_attn, trt_plugin
from plugins.yolo_decode.kernel import entry_params
trt_plugin._device_cc = lambda: 90
d = DEFS["zoo::ms_deform_attn"]
assert list(inspect.signature(d["aot_impl"]).parameters) == [
    "value", "sampling_locations", "attention_weights", "spatial_shapes", "outputs", "tactic"]
shapes = np.array([2, 3, 1, 1], np.int32)
value = TensorDesc((2, 7, 4, 8), trt.float16)
loc, weights = TensorDesc((2, 37, 4, 2, 1, 2), trt.float16), TensorDesc((2, 37, 4, 2, 1), trt.float16)
out = d["register"](value, loc, weights, shapes)
print([e.v for e in out.shape_expr], out.dtype)
print(len(d["autotune"](value, loc, weights, (out,))))
name, ptx, launch, extra = d["aot_impl"](value, loc, weights, shapes, (out,), 0)
grid_block = [getattr(getattr(launch, k), "v", getattr(launch, k)) for k in ("grid_x", "grid_y", "grid_z", "block_x")]
print(name, grid_block, [e.v for e in extra], [p.split()[1] for p in entry_params(ptx, name)],
      re.search(r"\\.version (\\S+)", ptx).group(1), re.search(r"\\.target (\\S+)", ptx).group(1), ".b16" in ptx)
try:
    d["register"](TensorDesc((2, 8, 4, 8), trt.float16), loc, weights, shapes)
except ValueError as e:
    print(e)

class Layer:
    name = None
    def get_output(self, i):
        return types.SimpleNamespace(name=None)
class Net:
    def add_plugin(self, request, aot=None):
        self.request, self.aot = request, aot
        return Layer()
net = Net()
y = add_ms_deform_attn(net, "value", "loc", "weights", spatial_shapes=((2, 3), (1, 1)), name="decoder.layers.0")
print(y.name, net.aot, net.request[2]["spatial_shapes"].tolist())
""")
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert proc.stdout.splitlines() == [
        "[2, 37, 32] HALF",
        "2",
        "ms_deform_attn_kernel [3, 4, 2, 128] [37] ['.u64', '.u64', '.u64', '.u32', '.u64'] 9.0 sm_90a True",
        "ms_deform_attn: value has 8 cells, the levels [(2, 3), (1, 1)] have 7",
        "decoder.layers.0 True [2, 3, 1, 1]",
    ], proc.stdout


RTDETR_LEVELS = ((80, 80), (40, 40), (20, 20))  # RT-DETR-l at 640: Q=300, M=8, L=3, P=4, D=32


@pytest.mark.cuda
def test_kernel_and_reference_backend_on_cuda_equal_the_reference():
    """The kernel compiled for the device at RT-DETR-l's shapes (FP32, FP16) and a small odd case, and the reference
    backend on CUDA running the plugin layer through the kernel (its cuda_forward)."""
    from test_yolo_decode import _cuda_reason
    if _cuda_reason():
        pytest.skip(_cuda_reason())
    from plugins.ms_deform_attn.kernel import ms_deform_attn_triton
    from zoo.engine.reference.executor import ReferenceExecutor
    from zoo.engine.reference.network import INetworkDefinition

    for args, levels in (((2, 300, 8, 32, 4), RTDETR_LEVELS), ((3, 20, 2, 5, 3), LEVELS)):
        for dtype in (torch.float32, torch.float16):
            value, loc, weights = inputs(*args, levels, dtype=dtype, seed=1)
            got = ms_deform_attn_triton(value.cuda(), loc.cuda(), weights.cuda(), levels).cpu()
            tol = dict(rtol=1e-5, atol=1e-5) if dtype == torch.float32 else dict(rtol=2 ** -10, atol=2 ** -10)
            torch.testing.assert_close(got.float(), ms_deform_attn_reference(value, loc, weights, levels).float(),
                                       **tol)
    value, loc, weights = inputs(2, 30, 8, 32, 4, RTDETR_LEVELS, seed=2)
    net = INetworkDefinition()
    feeds = _network(net, value, loc, weights, "plugin", RTDETR_LEVELS)
    got = ReferenceExecutor(net, "cuda").run({k: v.cuda() for k, v in feeds.items()})
    torch.testing.assert_close(got["decoder.layers.0.cross_attn"].cpu(),
                               ms_deform_attn_reference(value, loc, weights, RTDETR_LEVELS), rtol=1e-5, atol=1e-5)


@pytest.mark.tensorrt
def test_tensorrt_engine_runs_both_forms_like_the_reference():
    """Where a user has TensorRT: the AOT plugin (PTX embedded) and the grid-sample layers in real engines, FP32
    and FP16, dynamic batch."""
    from test_yolo_decode import _cuda_reason, _tensorrt_reason
    if _tensorrt_reason() or _cuda_reason():
        pytest.skip(_tensorrt_reason() or _cuda_reason())
    from zoo.engine.backend_api import BuildOptions
    from zoo.engine.backends import choose_backend

    for form in ("plugin", "layers"):
        for dtype in (torch.float32, torch.float16):
            backend = choose_backend("tensorrt")
            net = backend.create_network()
            value, loc, weights = inputs(3, 50, 8, 32, 4, RTDETR_LEVELS, dtype=dtype, seed=3)
            feeds = _network(net, value, loc, weights, form, RTDETR_LEVELS)
            runner = backend.load(backend.build(net, BuildOptions(input_name="value", batch=(1, 2, 3))))
            got = runner.run({k: v.cuda() for k, v in feeds.items()})["decoder.layers.0.cross_attn"].cpu()
            tol = dict(rtol=1e-4, atol=1e-4) if dtype == torch.float32 else dict(rtol=2 ** -8, atol=2 ** -8)
            torch.testing.assert_close(got.float(), ms_deform_attn_reference(value, loc, weights,
                                                                             RTDETR_LEVELS).float(), **tol)
