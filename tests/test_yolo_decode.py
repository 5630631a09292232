"""zoo::yolo_decode: the PyTorch reference against the formulas and YOLOv5's Detect head, the Triton kernel (under
the interpreter) against the reference, the reference backend's plugin layer, and, on a GPU, the compiled kernel and
the TensorRT AOT plugin."""
import os

os.environ.setdefault("TRITON_INTERPRET", "1")  # before anything imports triton: kernels then run on the CPU

from pathlib import Path

import numpy as np
import pytest
import torch

from plugins.yolo_decode import OP_ID, add_decode, decode_reference, decode_shapes
from zoo.trt_api import trt
from zoo.trt_api import plugins as ref_plugin
from zoo.trt_api.plugins import TensorSpec

ROOT = Path(__file__).resolve().parents[1]

P5_ANCHORS = [[10, 13, 16, 30, 33, 23], [30, 61, 62, 45, 59, 119], [116, 90, 156, 198, 373, 326]]
P6_ANCHORS = [[19, 27, 44, 40, 38, 94], [96, 68, 86, 152, 180, 137], [140, 301, 303, 264, 238, 542],
              [436, 615, 739, 380, 925, 792]]
P5_STRIDES, P6_STRIDES = [8, 16, 32], [8, 16, 32, 64]


def _triton_state() -> tuple[bool, str]:
    try:
        import triton  # noqa: F401
    except ImportError as e:
        return False, f"triton is not installed ({e}); `pip install triton` or `make setup`"
    from plugins.yolo_decode import kernel
    if not kernel.interpreting():
        return False, "triton was imported before TRITON_INTERPRET=1 was set, so kernels cannot run on the CPU"
    return True, ""


_TRITON_OK, _TRITON_WHY = _triton_state()
needs_interpreter = pytest.mark.skipif(not _TRITON_OK, reason=_TRITON_WHY)


def levels(anchors, strides, input_size, batch, nc, seed=0):
    """Random raw Detect outputs (B, na*no, H, W) for each level, scaled so sigmoids cover (0, 1) well."""
    g = torch.Generator().manual_seed(seed)
    no = nc + 5
    out = []
    for a, s in zip(anchors, strides):
        h, w = input_size[0] // s, input_size[1] // s
        out.append((torch.randn(batch, len(a) // 2 * no, h, w, generator=g) * 3,
                    s, np.array(a, dtype=np.float32)))
    return out


def independent_decode(feat: torch.Tensor, stride: int, anchors: np.ndarray, no: int) -> np.ndarray:
    """The formulas of the op, written out per cell in float64."""
    f = feat.double().numpy()
    b, c, h, w = f.shape
    na = c // no
    sig = 1.0 / (1.0 + np.exp(-f))
    out = np.empty((b, na * h * w, no))
    for a in range(na):
        for y in range(h):
            for x in range(w):
                t = sig[:, a * no:(a + 1) * no, y, x]
                row = a * h * w + y * w + x
                out[:, row, 0] = (2 * t[:, 0] - 0.5 + x) * stride
                out[:, row, 1] = (2 * t[:, 1] - 0.5 + y) * stride
                out[:, row, 2] = (2 * t[:, 2]) ** 2 * anchors[2 * a]
                out[:, row, 3] = (2 * t[:, 3]) ** 2 * anchors[2 * a + 1]
                out[:, row, 4:] = t[:, 4:]
    return out


# ------------------------------------------------------------------------------------------------ reference

@pytest.mark.parametrize("anchors,strides,size", [(P5_ANCHORS, P5_STRIDES, (64, 96)),
                                                  (P6_ANCHORS, P6_STRIDES, (128, 64))], ids=["P5", "P6"])
@pytest.mark.parametrize("batch,nc", [(1, 80), (2, 3), (3, 1)])
def test_reference_matches_the_formulas(anchors, strides, size, batch, nc):
    for feat, stride, a in levels(anchors, strides, size, batch, nc):
        got = decode_reference(feat, stride=stride, anchors=a, num_outputs=nc + 5)
        assert got.dtype == torch.float32
        np.testing.assert_allclose(got.numpy(), independent_decode(feat, stride, a, nc + 5), rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("anchors,strides,size", [(P5_ANCHORS, P5_STRIDES, (64, 96)),
                                                  (P6_ANCHORS, P6_STRIDES, (128, 64))], ids=["P5", "P6"])
@pytest.mark.parametrize("batch,nc", [(1, 80), (2, 3)])
def test_levels_concatenated_equal_yolov5_detect(anchors, strides, size, batch, nc):
    model = pytest.importorskip("zoo.yolov5.model", reason="zoo/yolov5/model.py (the Detect head) is not there yet")
    pairs = [[a[i:i + 2] for i in range(0, len(a), 2)] for a in anchors]
    detect = model.Detect(nc, pairs, [4] * len(anchors), strides).eval()
    raws = [feat for feat, _, _ in levels(anchors, strides, size, batch, nc, seed=1)]
    expected = detect.decode(raws)
    got = torch.cat([decode_reference(r, stride=s, anchors=(detect.anchors[i] * s).numpy(), num_outputs=nc + 5)
                     for i, (r, s) in enumerate(zip(raws, strides))], 1)
    assert got.shape == expected.shape == (batch, sum(3 * (size[0] // s) * (size[1] // s) for s in strides), nc + 5)
    torch.testing.assert_close(got, expected, rtol=1e-5, atol=1e-6)


def test_reference_accepts_fp16_and_returns_fp32():
    feat = torch.randn(2, 3 * 7, 3, 5)
    a = np.array(P5_ANCHORS[0], np.float32)
    got = decode_reference(feat.half(), stride=8, anchors=a, num_outputs=7)
    assert got.dtype == torch.float32
    torch.testing.assert_close(got, decode_reference(feat.half().float(), stride=8, anchors=a, num_outputs=7))


def test_shapes_keep_dynamic_dims_and_give_fp32():
    a = np.array(P5_ANCHORS[0], np.float32)
    (out,) = decode_shapes([TensorSpec((-1, 255, 20, 30), trt.float16)], stride=32, anchors=a, num_outputs=85)
    assert out == TensorSpec((-1, 3 * 20 * 30, 85), trt.float32)
    (out,) = decode_shapes([TensorSpec((4, 255, -1, 30), trt.float32)], stride=32, anchors=a, num_outputs=85)
    assert out.shape == (4, -1, 85)


def test_channel_mismatch_names_both_counts():
    a = np.array(P5_ANCHORS[0], np.float32)
    with pytest.raises(ValueError, match=r"252 channels.*3 anchors x num_outputs 85 = 255"):
        decode_shapes([TensorSpec((1, 252, 4, 4), trt.float32)], stride=8, anchors=a, num_outputs=85)
    with pytest.raises(ValueError, match="252 channels"):
        decode_reference(torch.zeros(1, 252, 4, 4), stride=8, anchors=a, num_outputs=85)


@pytest.mark.parametrize("attrs,match", [
    (dict(stride=0), "stride"), (dict(stride=8.5), "stride"), (dict(stride=True), "stride"),
    (dict(anchors=np.array([1, 2, 3], np.float32)), "pairs"), (dict(anchors=np.array([1, -2], np.float32)), "positive"),
    (dict(num_outputs=5), "num_outputs"), (dict(num_outputs=85.0), "num_outputs")])
def test_bad_attributes_are_named(attrs, match):
    kw = {**dict(stride=8, anchors=np.array(P5_ANCHORS[0], np.float32), num_outputs=85), **attrs}
    with pytest.raises(ValueError, match=match):
        decode_shapes([TensorSpec((1, 255, 4, 4), trt.float32)], **kw)


def test_registered_with_the_reference_backend():
    definition = ref_plugin.lookup(OP_ID)
    assert definition.forward is decode_reference and definition.shapes is decode_shapes
    assert definition.module.startswith("plugins.")


def test_add_decode_on_the_reference_backend_survives_serialisation():
    from zoo.engine.backends import ReferenceBackend
    from zoo.engine.backend_api import BuildOptions

    backend = ReferenceBackend()
    net = backend.create_network()
    outs = []
    feeds = {}
    for i, (feat, stride, a) in enumerate(levels(P5_ANCHORS, P5_STRIDES, (64, 32), 2, 3)):
        x = net.add_input(f"p{i}", trt.float32, (-1, *feat.shape[1:]))
        y = add_decode(net, x, stride=float(stride), anchors=a.reshape(3, 2), num_outputs=8,
                       name=f"model.24.decode.{i}")
        assert tuple(y.shape) == (-1, 3 * feat.shape[2] * feat.shape[3], 8)
        outs.append(y)
        feeds[f"p{i}"] = feat
    concat = net.add_concatenation(outs)
    concat.axis = 1
    net.mark_output(concat.get_output(0))
    assert [net.get_layer(i).name for i in range(3)] == [f"model.24.decode.{i}" for i in range(3)]
    runner = backend.load(backend.build(net, BuildOptions(input_name="p0", batch=(1, 2, 2))))
    (got,) = runner.run(feeds).values()
    expected = torch.cat([decode_reference(f, stride=s, anchors=a, num_outputs=8)
                          for f, s, a in levels(P5_ANCHORS, P5_STRIDES, (64, 32), 2, 3)], 1)
    torch.testing.assert_close(got, expected, rtol=0, atol=0)


# ------------------------------------------------------------------------------------------------ Triton kernel

@needs_interpreter
@pytest.mark.parametrize("batch,nc,hw", [(1, 80, (5, 7)), (3, 3, (5, 7)), (2, 1, (1, 1)), (3, 2, (13, 4))])
def test_kernel_equals_reference(batch, nc, hw):
    from plugins.yolo_decode.kernel import decode_triton

    g = torch.Generator().manual_seed(batch * 100 + nc)
    feat = torch.randn(batch, 3 * (nc + 5), *hw, generator=g) * 4
    a = np.array(P5_ANCHORS[1], np.float32)
    got = decode_triton(feat, stride=16, anchors=a, num_outputs=nc + 5)
    torch.testing.assert_close(got, decode_reference(feat, stride=16, anchors=a, num_outputs=nc + 5),
                               rtol=1e-5, atol=1e-5)


@needs_interpreter
def test_kernel_reads_fp16_and_writes_fp32():
    from plugins.yolo_decode.kernel import decode_triton

    feat = (torch.randn(3, 4 * 6, 5, 7) * 4).half()
    a = np.array([10, 13, 16, 30, 33, 23, 40.5, 41.25], np.float32)  # four anchors, fractional ones too
    got = decode_triton(feat, stride=8, anchors=a, num_outputs=6)
    assert got.dtype == torch.float32 and got.shape == (3, 4 * 35, 6)
    torch.testing.assert_close(got, decode_reference(feat, stride=8, anchors=a, num_outputs=6),
                               rtol=1e-5, atol=1e-5)


@needs_interpreter
def test_kernel_writes_every_output_element(monkeypatch):
    """Dense output: no row or field is left as whatever the memory held (here: NaN)."""
    from plugins.yolo_decode.kernel import decode_triton

    empty = torch.empty
    monkeypatch.setattr(torch, "empty", lambda *s, **k: empty(*s, **k).fill_(float("nan")))
    got = decode_triton(torch.randn(2, 3 * 7, 5, 7), stride=8, anchors=np.array(P5_ANCHORS[0], np.float32),
                        num_outputs=7)
    assert not torch.isnan(got).any()


@needs_interpreter
def test_kernel_rejects_what_the_reference_rejects():
    from plugins.yolo_decode.kernel import decode_triton

    with pytest.raises(ValueError, match="252 channels"):
        decode_triton(torch.zeros(1, 252, 4, 4), stride=8, anchors=np.array(P5_ANCHORS[0], np.float32),
                      num_outputs=85)
    with pytest.raises(ValueError, match="float32 or float16"):
        decode_triton(torch.zeros(1, 255, 4, 4, dtype=torch.float64), stride=8,
                      anchors=np.array(P5_ANCHORS[0], np.float32), num_outputs=85)


# ------------------------------------------------------------------------------------------------ AOT (PTX)


def test_aot_ptx_has_tensorrts_parameter_order(run_fresh):
    """The PTX for the AOT plugin compiles without a GPU; its entry takes exactly (feat, H, W, out): TensorRT's
    order of inputs, extra int32 scalars, outputs, with Triton's hidden scratch pointers removed."""
    pytest.importorskip("triton", reason="triton is not installed")
    proc = run_fresh("""
        import numpy as np
        from plugins.ptx import ptx_version
        from plugins.yolo_decode.kernel import compile_decode_ptx, entry_params
        for dtype in ("fp32", "fp16"):
            k = compile_decode_ptx(in_dtype=dtype, stride=8, anchors=np.array([10, 13, 16, 30, 33, 23], np.float32),
                                   num_outputs=85, cc=90, ptx_version=ptx_version({}, driver=13000))
            params = entry_params(k.ptx, k.name)
            version = [line for line in k.ptx.splitlines() if line.startswith(".version")]
            print(k.name, k.threads, k.block_cells, [p.split()[1] for p in params], f".reqntid {k.threads}" in k.ptx,
                  version)
    """)
    assert proc.returncode == 0, proc.stderr[-3000:]
    lines = proc.stdout.strip().splitlines()
    assert len(lines) == 2
    for line in lines:  # the ISA capped at what a CUDA 13.0 driver (the lent H200's) accepts
        assert line == "yolo_decode_kernel 128 32 ['.u64', '.u32', '.u32', '.u64'] True ['.version 9.0']", line


_TENSORRT_STAND_IN = '''
import inspect, sys, types, typing
import numpy as np
import plugins.yolo_decode, zoo.engine.reference.network  # the zoo's own modules see no tensorrt

trt = types.ModuleType("tensorrt")
trt.float32, trt.float16 = "FLOAT", "HALF"
trtp = types.ModuleType("tensorrt.plugin")
trt.plugin = trtp
sys.modules.update({"tensorrt": trt, "tensorrt.plugin": trtp})
DEFS = {}


class ShapeExpr:  # concrete values; like TensorRT's, only the expression-on-the-left operators exist
    is_fake = False
    def __init__(self, v): self.v = v
    is_constant = property(lambda self: True)
    def constant_value(self): return self.v
    def __mul__(self, o): return ShapeExpr(self.v * getattr(o, "v", o))


class TensorDesc:
    def __init__(self, shape, dtype): self.shape_expr, self.dtype = [ShapeExpr(d) for d in shape], dtype


class KernelLaunchParams:
    grid_x = grid_y = grid_z = block_x = block_y = block_z = 1
    shared_mem = 0


class SymInt32:
    def __init__(self, e): self.v = getattr(e, "v", e)


class SymIntExprs(list):
    from_tuple = classmethod(lambda cls, t: cls(t))


def decorator(kind):
    def wrap(op_id):
        def register(fn):
            for p in inspect.signature(fn).parameters.values():
                assert not isinstance(p.annotation, str), f"{fn.__name__}: annotation {p.name} is a string"
            DEFS.setdefault(op_id, {})[kind] = fn
            return fn
        return register
    return wrap


trtp.register, trtp.aot_impl, trtp.autotune = decorator("register"), decorator("aot_impl"), decorator("autotune")
trtp.TensorDesc, trtp.KernelLaunchParams, trtp.SymInt32, trtp.SymIntExprs = (TensorDesc, KernelLaunchParams,
                                                                             SymInt32, SymIntExprs)
trtp.SymExprs = SymIntExprs
trtp.AutoTuneCombination = lambda io, layouts="LINEAR": (io, layouts)
trtp.cdiv = lambda a, b: ShapeExpr(-(-getattr(a, "v", a) // getattr(b, "v", b)))
trtp.from_shape_expr = lambda shape, dtype: TensorDesc([getattr(d, "v", d) for d in shape], dtype)


def op_call(*inputs, **attrs):  # TensorRT checks types exactly and keywords in registration order
    params = list(inspect.signature(DEFS["zoo::yolo_decode"]["register"]).parameters.values())[1:]
    assert list(attrs) == [p.name for p in params], list(attrs)
    for p in params:
        v = attrs[p.name]
        if isinstance(v, np.ndarray):
            assert typing.get_args(typing.get_args(p.annotation)[1])[0] == v.dtype.type, (p.name, v.dtype)
        else:
            assert p.annotation is type(v), (p.name, type(v))
    return ("request", inputs, attrs)


trtp.op = types.SimpleNamespace(zoo=types.SimpleNamespace(yolo_decode=op_call))
'''


def test_tensorrt_registration_against_a_stand_in(run_fresh):
    """Without TensorRT: trt_plugin.py's shape function, autotune, AOT launch and add_decode's TensorRT branch,
    run against a stand-in `tensorrt.plugin` that enforces the rules TensorRT's own module checks (annotations as
    objects, the aot_impl schema, exact attribute types and order, shape expressions on the left)."""
    pytest.importorskip("triton", reason="triton is not installed")
    proc = run_fresh(_TENSORRT_STAND_IN + """
import numpy as np
from plugins.yolo_decode import add_decode, trt_plugin
from plugins.yolo_decode.kernel import entry_params
trt_plugin._device_cc = lambda: 90
d = DEFS["zoo::yolo_decode"]
assert list(inspect.signature(d["aot_impl"]).parameters) == ["feat", "stride", "anchors", "num_outputs", "outputs",
                                                             "tactic"]
anchors = np.array([10, 13, 16, 30, 33, 23], np.float32)
feat = TensorDesc((2, 255, 5, 7), trt.float16)
out = d["register"](feat, 8, anchors, 85)
print([e.v for e in out.shape_expr], out.dtype)
print(d["autotune"](feat, (out,)))
name, ptx, launch, extra = d["aot_impl"](feat, 8, anchors, 85, (out,), 0)
grid_block = [getattr(getattr(launch, k), "v", getattr(launch, k)) for k in ("grid_x", "grid_y", "grid_z", "block_x")]
print(name, grid_block, [e.v for e in extra], len(entry_params(ptx, name)), ".b16" in ptx)

class Layer:
    name = None
    def get_output(self, i): return ("output", i, self.name)
class Net:
    def add_plugin(self, request, aot=None):
        self.request, self.aot = request, aot
        return Layer()
net = Net()
y = add_decode(net, "feat", stride=np.float32(16.0), anchors=anchors.reshape(3, 2).astype(np.float64),
               num_outputs=np.int64(85), name="model.24.decode.1")
print(y, net.aot, net.request[2]["stride"], net.request[2]["anchors"].dtype, net.request[2]["anchors"].shape)
""")
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert proc.stdout.splitlines() == [
        "[2, 105, 85] FLOAT",
        "[('FP32, FP32', 'LINEAR'), ('FP16, FP32', 'LINEAR')]",
        "yolo_decode_kernel [2, 3, 2, 128] [5, 7] 4 True",
        "('output', 0, 'model.24.decode.1') True 16 float32 (6,)",
    ], proc.stdout


def test_strip_hidden_params_refuses_a_kernel_that_reads_them():
    pytest.importorskip("triton", reason="triton is not installed")
    from plugins.yolo_decode.kernel import strip_hidden_params

    ptx = (".visible .entry k(\n\t.param .u64 k_param_0,\n\t.param .u32 k_param_1,\n\t.param .u64 k_param_2\n)\n"
           "{\n\tld.param.b64 %rd1, [k_param_0];\n}\n")
    stripped = strip_hidden_params(ptx, "k", 2)
    assert "k_param_2" not in stripped and "k_param_1\n)" in stripped
    with pytest.raises(RuntimeError, match="reads its hidden parameter k_param_0"):
        strip_hidden_params(ptx, "k", 0)
    with pytest.raises(RuntimeError, match="scratch memory"):
        strip_hidden_params(ptx, "k", 2, scratch_bytes=64)
    assert strip_hidden_params(ptx, "k", 3) == ptx


# ------------------------------------------------------------------------------------------------ GPU

def _cuda_reason() -> str | None:
    if not torch.cuda.is_available():
        return "no CUDA device visible to PyTorch (CPU build of torch, or no GPU)"
    try:
        import triton  # noqa: F401
    except ImportError:
        return "triton is not installed"
    return None


def _tensorrt_reason() -> str | None:
    from zoo.engine.gpu import gpu_status

    ok, why = gpu_status()
    return None if ok else f"TensorRT cannot run here: {why}"


@pytest.mark.cuda
def test_kernel_on_cuda_equals_reference(run_fresh):
    why = _cuda_reason()
    if why:
        pytest.skip(why)
    proc = run_fresh("""
        import numpy as np, torch
        from plugins.yolo_decode.kernel import decode_triton
        from plugins.yolo_decode import decode_reference
        for (b, nc, h, w, dtype) in [(1, 80, 80, 80, torch.float32), (3, 3, 5, 7, torch.float32),
                                      (2, 80, 20, 20, torch.float16), (4, 1, 1, 1, torch.float32)]:
            feat = (torch.randn(b, 3 * (nc + 5), h, w) * 4).to(dtype)
            a = np.array([116, 90, 156, 198, 373, 326], np.float32)
            got = decode_triton(feat.cuda(), stride=32, anchors=a, num_outputs=nc + 5)
            torch.testing.assert_close(got.cpu(), decode_reference(feat, stride=32, anchors=a, num_outputs=nc + 5),
                                       rtol=1e-5, atol=1e-4)
        print("ok")
    """)
    assert proc.returncode == 0 and proc.stdout.strip() == "ok", proc.stderr[-3000:]


@pytest.mark.tensorrt
def test_tensorrt_aot_plugin_equals_reference(run_fresh):
    why = _tensorrt_reason() or _cuda_reason()
    if why:
        pytest.skip(why)
    proc = run_fresh("""
        import numpy as np, tensorrt as trt, torch
        from plugins.yolo_decode import add_decode, decode_reference
        from zoo.engine.backends import choose_backend
        from zoo.engine.backend_api import BuildOptions
        anchors = [[10, 13, 16, 30, 33, 23], [30, 61, 62, 45, 59, 119], [116, 90, 156, 198, 373, 326]]
        for dtype, ttype in ((torch.float32, trt.float32), (torch.float16, trt.float16)):
            backend = choose_backend("tensorrt")
            net = backend.create_network()
            feeds, outs, expected = {}, [], []
            for i, (s, a) in enumerate(zip((8, 16, 32), anchors)):
                feat = (torch.randn(3, 3 * 85, 96 // s, 64 // s) * 4).to(dtype)
                x = net.add_input(f"p{i}", ttype, (-1, 255, 96 // s, 64 // s))
                outs.append(add_decode(net, x, stride=s, anchors=np.array(a, np.float32), num_outputs=85,
                                       name=f"model.24.decode.{i}"))
                feeds[f"p{i}"] = feat.cuda()
                expected.append(decode_reference(feat, stride=s, anchors=np.array(a, np.float32), num_outputs=85))
            cat = net.add_concatenation(outs)
            cat.axis = 1
            cat.get_output(0).name = "pred"
            net.mark_output(cat.get_output(0))
            runner = backend.load(backend.build(net, BuildOptions(input_name="p0", batch=(1, 3, 4))))
            got = runner.run(feeds)["pred"].cpu()
            torch.testing.assert_close(got, torch.cat(expected, 1), rtol=1e-5, atol=1e-4)
        print("ok")
    """, timeout=600)
    assert proc.returncode == 0 and proc.stdout.strip().endswith("ok"), (proc.stdout[-2000:], proc.stderr[-3000:])
