"""zoo::dfl_decode: the PyTorch reference against the reference module's Detect.decode (written independently),
the Triton kernel against the reference under TRITON_INTERPRET=1, the reference backend's plugin path, and the
AOT PTX compiled for sm_90 without a GPU."""
import numpy as np
import pytest
import torch

from plugins.dfl_decode import OP_ID, add_dfl_decode, decode_reference, decode_shapes
from zoo.trt_api import trt
from zoo.trt_api import plugins as ref_plugin
from zoo.trt_api.plugins import TensorSpec
from zoo.yolov8.model import Detect

needs_interpreter = pytest.mark.skipif(
    not __import__("os").environ.get("TRITON_INTERPRET"), reason="kernel tests run under TRITON_INTERPRET=1")


def levels(batch, nc, sizes, reg_max=16, dtype=torch.float32, seed=0):
    g = torch.Generator().manual_seed(seed)
    return [((torch.randn(batch, 4 * reg_max, h, w, generator=g) * 3).to(dtype),
             (torch.randn(batch, nc, h, w, generator=g) * 3).to(dtype)) for h, w in sizes]


@pytest.mark.parametrize("nc,reg_max", [(80, 16), (3, 16), (1, 8)])
def test_reference_per_level_equals_the_detect_head_decode(nc, reg_max):
    raw = levels(2, nc, [(4, 6), (2, 3), (1, 2)], reg_max)
    head = Detect(nc, (16, 16, 16), reg_max=reg_max)
    expected = head.decode(raw)
    got = torch.cat([decode_reference(b, c, stride=s, reg_max=reg_max) for (b, c), s in zip(raw, (8, 16, 32))], 2)
    assert got.shape == expected.shape == (2, 4 + nc, 24 + 6 + 2)
    torch.testing.assert_close(got, expected, rtol=1e-5, atol=1e-4)


@pytest.mark.parametrize("attrs,match", [(dict(stride=0), "stride"), (dict(stride=8.5), "stride"),
                                         (dict(reg_max=0), "reg_max"), (dict(reg_max=16.0), "reg_max"),
                                         (dict(reg_max=True), "reg_max")])
def test_bad_attributes_are_named(attrs, match):
    kw = {**dict(stride=8, reg_max=16), **attrs}
    with pytest.raises(ValueError, match=match):
        decode_shapes([TensorSpec((1, 64, 4, 4), trt.float32), TensorSpec((1, 80, 4, 4), trt.float32)], **kw)


def test_shape_checks_name_the_mismatch():
    with pytest.raises(ValueError, match="box input has 60 channels, expected 4 \\* reg_max = 64"):
        decode_shapes([TensorSpec((1, 60, 4, 4), trt.float32), TensorSpec((1, 80, 4, 4), trt.float32)], stride=8,
                      reg_max=16)
    with pytest.raises(ValueError, match="does not match box input"):
        decode_reference(torch.zeros(1, 64, 4, 4), torch.zeros(1, 80, 4, 5), stride=8, reg_max=16)
    with pytest.raises(ValueError, match="must both be FP32 or both FP16"):
        decode_shapes([TensorSpec((1, 64, 4, 4), trt.float16), TensorSpec((1, 80, 4, 4), trt.float32)], stride=8,
                      reg_max=16)


def test_registered_with_the_reference_backend_and_runs_with_dynamic_batch():
    from zoo.engine.backends import ReferenceBackend
    from zoo.engine.backend_api import BuildOptions

    assert ref_plugin.lookup(OP_ID).forward is decode_reference
    backend = ReferenceBackend()
    net = backend.create_network()
    raw = levels(3, 5, [(4, 6), (2, 3)])
    outs, feeds = [], {}
    for i, ((b, c), s) in enumerate(zip(raw, (8, 16))):
        xb = net.add_input(f"b{i}", trt.float32, (-1, *b.shape[1:]))
        xc = net.add_input(f"c{i}", trt.float32, (-1, *c.shape[1:]))
        y = add_dfl_decode(net, xb, xc, stride=np.int64(s), reg_max=np.int32(16), name=f"model.23/decode{i}")
        assert tuple(y.shape) == (-1, 9, b.shape[2] * b.shape[3]) and y.name == f"model.23/decode{i}"
        outs.append(y)
        feeds.update({f"b{i}": b, f"c{i}": c})
    cat = net.add_concatenation(outs)
    cat.axis = 2
    net.mark_output(cat.get_output(0))
    runner = backend.load(backend.build(net, BuildOptions(input_name="b0", batch=(1, 3, 4))))
    (got,) = runner.run(feeds).values()
    torch.testing.assert_close(got, torch.cat([decode_reference(b, c, stride=s, reg_max=16)
                                               for (b, c), s in zip(raw, (8, 16))], 2), rtol=0, atol=0)


@needs_interpreter
@pytest.mark.parametrize("batch,nc,hw,reg_max", [(1, 80, (5, 7), 16), (3, 3, (9, 10), 16), (2, 1, (1, 1), 16),
                                                 (2, 33, (3, 4), 7)])
def test_kernel_equals_reference(batch, nc, hw, reg_max):
    from plugins.dfl_decode.kernel import decode_triton

    ((box, cls),) = levels(batch, nc, [hw], reg_max, seed=batch * 10 + nc)
    got = decode_triton(box, cls, stride=16, reg_max=reg_max)
    torch.testing.assert_close(got, decode_reference(box, cls, stride=16, reg_max=reg_max), rtol=1e-5, atol=1e-4)


@needs_interpreter
def test_kernel_reads_fp16_writes_fp32_and_every_element(monkeypatch):
    from plugins.dfl_decode.kernel import decode_triton

    empty = torch.empty
    monkeypatch.setattr(torch, "empty", lambda *s, **k: empty(*s, **k).fill_(float("nan")))
    ((box, cls),) = levels(2, 40, [(9, 11)], dtype=torch.float16)
    got = decode_triton(box, cls, stride=32, reg_max=16)
    assert got.dtype == torch.float32 and not torch.isnan(got).any()
    torch.testing.assert_close(got, decode_reference(box, cls, stride=32, reg_max=16), rtol=1e-5, atol=1e-4)


def test_tensorrt_registration_and_sm90_ptx_against_a_stand_in(run_fresh):
    """Without TensorRT or a GPU: trt_plugin.py's shape function, autotune and AOT implementation, and
    add_dfl_decode's TensorRT branch, against the stand-in `tensorrt.plugin` of test_yolo_decode (annotations as
    objects, exact attribute types and keyword order, shape expressions on the left). The AOT implementation
    compiles the kernel for sm_90 with the PTX ISA capped at 9.0 (ZOO_PTX_VERSION, what the lent H200's driver
    accepts); the entry takes exactly (box, cls, H, W, out), TensorRT's order of inputs, int32 scalars, outputs."""
    pytest.importorskip("triton", reason="triton is not installed")
    from test_yolo_decode import _TENSORRT_STAND_IN
    stand_in = _TENSORRT_STAND_IN.replace('DEFS["zoo::yolo_decode"]', 'DEFS["zoo::dfl_decode"]').replace(
        "yolo_decode=op_call", "dfl_decode=op_call").replace("import plugins.yolo_decode,", "import plugins.dfl_decode,"
    ).replace("parameters.values())[1:]", "parameters.values())[2:]")  # two tensor inputs before the attributes
    # like TensorRT's, the stand-in's expressions add a constant on the left (4 box fields + the classes)
    stand_in += "\nShapeExpr.__add__ = lambda self, o: ShapeExpr(self.v + getattr(o, 'v', o))\n"
    proc = run_fresh("import os\nos.environ['ZOO_PTX_VERSION'] = '90'\n" + stand_in + """
import re
from plugins.dfl_decode import add_dfl_decode, trt_plugin
from plugins.yolo_decode.kernel import entry_params
trt_plugin._device_cc = lambda: 90
d = DEFS["zoo::dfl_decode"]
assert list(inspect.signature(d["aot_impl"]).parameters) == ["box", "cls", "stride", "reg_max", "outputs", "tactic"]
box, cls = TensorDesc((2, 64, 5, 7), trt.float16), TensorDesc((2, 80, 5, 7), trt.float16)
out = d["register"](box, cls, 8, 16)
print([e.v for e in out.shape_expr], out.dtype)
print(len(d["autotune"](box, cls, (out,))))
name, ptx, launch, extra = d["aot_impl"](box, cls, 8, 16, (out,), 0)
grid_block = [getattr(getattr(launch, k), "v", getattr(launch, k)) for k in ("grid_x", "grid_y", "block_x")]
print(name, grid_block, [e.v for e in extra], [p.split()[1] for p in entry_params(ptx, name)],
      re.search(r"\\.version (\\S+)", ptx).group(1), re.search(r"\\.target (\\S+)", ptx).group(1), ".b16" in ptx)

class Layer:
    name = None
    def get_output(self, i):
        return types.SimpleNamespace(name=None)
class Net:
    def add_plugin(self, request, aot=None):
        self.request, self.aot = request, aot
        return Layer()
net = Net()
y = add_dfl_decode(net, "box", "cls", stride=np.float32(16.0), reg_max=np.int64(16), name="model.23/decode1")
print(y.name, net.aot, net.request[2])
""")
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert proc.stdout.splitlines() == [
        "[2, 84, 35] FLOAT",
        "2",
        "dfl_decode_kernel [1, 2, 128] [5, 7] ['.u64', '.u64', '.u32', '.u32', '.u64'] 9.0 sm_90a True",
        "model.23/decode1 True {'stride': 16, 'reg_max': 16}",
    ], proc.stdout
