"""The blocks of the ghost, v3, v5u and v6 tables (zoo/yolo/blocks: ghost.py, spp.py, c2.py, torch_rows.py), each
built from its registry entry with the same args as its reference module, on the reference backend and on ONNX
Runtime, every named tensor compared at FP32 1e-4 (relative to max(1, max|ref|)) with random BatchNorm statistics.
The table-level `activation:` key is read as data from an allow-list."""
from __future__ import annotations

import pytest
import torch

from layerwise import AsRow
from wts.weight_map import WeightMap
from zoo.engine import validate
from zoo.trt_api import trt
from zoo.engine.backends import ReferenceBackend
from zoo.engine.model import randomize_batchnorm, state_dict_arrays
from zoo.engine.onnx.backend import OnnxBackend
from zoo.yolo.activation import table_activation
from zoo.yolo.registry import Options, TableError, lookup, using

PREFIX = "model.3"




def random_module(name: str, args: list) -> torch.nn.Module:
    torch.manual_seed(0)
    module = AsRow(lookup(name, "test").module(*args))
    for m in module.modules():
        if isinstance(m, (torch.nn.Conv2d, torch.nn.ConvTranspose2d)):
            torch.nn.init.normal_(m.weight, std=(1.0 / m.weight[0].numel()) ** 0.5)
    randomize_batchnorm(module, torch.Generator().manual_seed(1))
    return module.eval()


def run_block(name: str, args: list, x: torch.Tensor, backend, module: torch.nn.Module):
    """(rows, output tensor name, unused weight keys) of the block's network on one backend."""
    expected = validate.reference_outputs(module, x)
    weights = WeightMap(state_dict_arrays(module), "block")
    net = ReferenceBackend().create_network()
    inp = net.add_input("x", trt.float32, (-1, *x.shape[1:]))
    out = lookup(name, "test").build(net, weights, PREFIX, inp, *args)
    names = validate.mark_comparable(net, set(expected))
    net.mark_output(out)
    got = backend.runner_for(net).run({"x": x.numpy()})
    rows = [validate.compare(n, got[n], expected[n], 1e-4) for n in names]
    rows.append(validate.compare("output", got[out.name], expected["__output__"], 1e-4))
    return rows, out.name, weights.unused()


def check_block(name: str, args: list, shape: tuple, min_rows: int, opts: Options = Options()) -> list:
    """The block against its module on both executors; returns the reference backend's rows."""
    x = torch.randn(*shape, generator=torch.Generator().manual_seed(2))
    with using(opts):
        module = random_module(name, args)
        results = [run_block(name, args, x, backend, module) for backend in (ReferenceBackend(), OnnxBackend())]
    for rows, out_name, unused in results:
        assert out_name == PREFIX
        assert len(rows) >= min_rows, [r.name for r in rows]
        bad = [r for r in rows if not r.ok]
        assert not bad, validate.format_table(rows, "tolerance 1e-4")
        assert unused == []
    return results[0][0]


# ------------------------------------------------------------------------------------------------- ghost blocks

@pytest.mark.parametrize("k,s", [(3, 2), (1, 1)])
def test_ghost_conv(k, s):
    rows = check_block("GhostConv", [16, 24, k, s], (2, 16, 9, 10), min_rows=7)
    assert {f"{PREFIX}.cv1", f"{PREFIX}.cv2.conv", f"{PREFIX}.cv2"} <= {r.name for r in rows}


@pytest.mark.parametrize("c,s", [(16, 1), (16, 2), (8, 2)])
def test_ghost_bottleneck_both_strides(c, s):
    rows = check_block("GhostBottleneck", [16, c, 3, s], (2, 16, 7, 9), min_rows=10)
    names = {r.name for r in rows}
    assert (f"{PREFIX}.shortcut.0" in names) == (s == 2) and (f"{PREFIX}.conv.1" in names) == (s == 2)


def test_ghost_bottleneck_stride_one_needs_equal_channels():
    with pytest.raises(TableError, match="c1 == c2"):
        lookup("GhostBottleneck", "test").module(16, 8, 3, 1)


@pytest.mark.parametrize("n", [1, 3])
def test_c3_ghost(n):
    rows = check_block("C3Ghost", [24, 32, n, True], (2, 24, 6, 7), min_rows=6 + 8 * n)
    assert f"{PREFIX}.m.{n - 1}.conv.2.cv2" in {r.name for r in rows}


def test_c3_ghost_under_relu_is_another_network():
    """The table's default activation reaches the ghost convolutions (and a wrong one is seen)."""
    check_block("C3Ghost", [16, 16, 1], (1, 16, 5, 5), min_rows=10, opts=Options(activation="relu"))
    x = torch.randn(1, 16, 5, 5)
    with using(Options(activation="relu")):
        module = random_module("C3Ghost", [16, 16, 1])
    rows, _, _ = run_block("C3Ghost", [16, 16, 1], x, ReferenceBackend(), module)  # network built with SiLU
    assert not all(r.ok for r in rows)


# ------------------------------------------------------------------------------------------------- SPP, C2

@pytest.mark.parametrize("k", [[5, 9, 13], [3]])
def test_spp(k):
    rows = check_block("SPP", [32, 24, k], (2, 32, 9, 8), min_rows=5)
    assert {f"{PREFIX}.m.{i}" for i in range(len(k))} <= {r.name for r in rows}


def test_spp_needs_odd_kernels():
    with pytest.raises(TableError, match="SPP kernels"):
        lookup("SPP", "test").module(32, 24, [5, 8])


@pytest.mark.parametrize("shortcut", [True, False])
def test_c2(shortcut):
    rows = check_block("C2", [24, 32, 2, shortcut], (2, 24, 6, 5), min_rows=10)
    assert {f"{PREFIX}.m.0.cv1", f"{PREFIX}.m.1.cv1"} <= {r.name for r in rows}


def test_c2_runs_the_bottlenecks_on_the_first_half():
    """C2 (unlike C2f) feeds m the first half of cv1's output; a builder that took the second would be caught."""
    module = random_module("C2", [16, 16, 1, True])
    x = torch.randn(1, 16, 4, 4)
    with torch.no_grad():
        a, b = module.model["3"].cv1(x).chunk(2, 1)
        assert not torch.allclose(module.model["3"].m(a), module.model["3"].m(b))
    check_block("C2", [16, 16, 1, True], (1, 16, 4, 4), min_rows=6)


# ------------------------------------------------------------------------------------------------- torch.nn rows

@pytest.mark.parametrize("args", [[2, 2, 0], [2, 1, 0], [3, 2, 1], [3, 2, 0, 1, False, True]])
def test_max_pool(args):
    check_block("nn.MaxPool2d", args, (2, 8, 7, 9), min_rows=2)


@pytest.mark.parametrize("padding", [[0, 1, 0, 1], [2, 0, 1, 3], 1])
def test_zero_pad(padding):
    check_block("nn.ZeroPad2d", [padding], (2, 3, 5, 6), min_rows=2)


def test_zero_pad_then_max_pool_sees_zeros():
    """yolov3-tiny's rows 11-12 on an all-negative input: the pad's zeros win the last row and column, which a
    pooling layer's own padding would not give."""
    x = -1 - torch.rand(1, 2, 4, 4)
    net = ReferenceBackend().create_network()
    inp = net.add_input("x", trt.float32, (-1, 2, 4, 4))
    pad = lookup("nn.ZeroPad2d", "test").build(net, None, "model.11", inp, [0, 1, 0, 1])
    out = lookup("nn.MaxPool2d", "test").build(net, None, "model.12", pad, 2, 1, 0)
    net.mark_output(out)
    got = ReferenceBackend().runner_for(net).run({"x": x.numpy()})["model.12"]
    expected = torch.nn.MaxPool2d(2, 1, 0)(torch.nn.ZeroPad2d((0, 1, 0, 1))(x))
    assert got.shape == (1, 2, 4, 4) and torch.equal(got, expected) and (got[..., -1] == 0).all()


@pytest.mark.parametrize("k,s", [(2, 2), (3, 1)])
def test_conv_transpose(k, s):
    check_block("nn.ConvTranspose2d", [12, 8, k, s, 0], (2, 12, 5, 6), min_rows=1)


@pytest.mark.parametrize("name,args", [("nn.ConvTranspose2d", [12, 8, 2, 2, 1]), ("nn.MaxPool2d", [2, 2, 0, 2]),
                                       ("nn.ZeroPad2d", [[0, 1]])])
def test_unsupported_torch_row_args_are_one_line(name, args):
    with pytest.raises(TableError, match=name.replace(".", r"\.")):
        lookup(name, "test").module(*args)


# ------------------------------------------------------------------------------------------------- activation key

@pytest.mark.parametrize("text,name", [("torch.nn.ReLU()", "relu"), ("nn.SiLU()", "silu"), (" nn.Sigmoid( ) ", "sigmoid"),
                                       ("torch.nn.Tanh()", "tanh")])
def test_table_activation_is_read_as_data(text, name):
    assert table_activation(text, "yolov6.yaml") == name
    with using(Options(activation=name)):  # a name the Conv block builds
        act = lookup("Conv", "test").module(4, 4, 1).act
    assert type(act).__name__.lower() == name


@pytest.mark.parametrize("text", ["torch.nn.LeakyReLU(0.1)", "__import__('os').system('true')", "nn.ReLU",
                                  "os.ReLU()", "torch.nn.Module()", "nn.ReLU(); nn.SiLU()", 3, None])
def test_table_activation_refuses_anything_else_in_one_line(text):
    with pytest.raises(TableError, match="yolov6.yaml: activation") as error:
        table_activation(text, "yolov6.yaml")
    assert "\n" not in str(error.value)
