"""The YOLO blocks of zoo/yolo/blocks (and SPPF's activation choice) on the reference backend against the
independent reference modules of tests/reference_yolov8.py, every named tensor compared at FP32 1e-4 (relative to
max(1, max|ref|)), random BatchNorm."""
from __future__ import annotations

import pytest
import torch

from layerwise import AsRow
from wts.weight_map import WeightMap
from zoo.engine import validate
from zoo.trt_api import trt
from zoo.engine.backends import ReferenceBackend
from zoo.engine.model import randomize_batchnorm, state_dict_arrays
import reference_yolov8 as ref
from zoo.yolo.blocks import conv, csp, psa
from zoo.yolo.blocks.sppf import sppf
from zoo.yolo.registry import Options, using


def sppf_with(act, net, weights, prefix, x):
    """SPPF(32, 16, 5) with cv1's activation on (act) or off, the table option it reads."""
    with using(Options(), sppf_act=act):
        return sppf(net, weights, prefix, x, 32, 16, 5)




def check_block(block, define, shape, min_rows):
    torch.manual_seed(0)
    module = AsRow(block)
    for m in module.modules():
        if isinstance(m, torch.nn.Conv2d):
            torch.nn.init.normal_(m.weight, std=(1.0 / (m.weight[0].numel())) ** 0.5)
    randomize_batchnorm(module, torch.Generator().manual_seed(1))
    module.eval()
    x = torch.randn(*shape)
    expected = validate.reference_outputs(module, x)
    weights = WeightMap(state_dict_arrays(module), "block")
    backend = ReferenceBackend()
    net = backend.create_network()
    inp = net.add_input("x", trt.float32, (-1, *shape[1:]))
    out = define(net, weights, "model.3", inp)
    net.mark_output(out)
    names = validate.mark_comparable(net, set(expected))
    got = backend.runner_for(net).run({"x": x.numpy()})
    rows = [validate.compare(n, got[n], expected[n], 1e-4) for n in names]
    rows.append(validate.compare("output", got[out.name], expected["__output__"], 1e-4))
    assert out.name == "model.3"
    assert len(rows) >= min_rows, [r.name for r in rows]
    bad = [r for r in rows if not r.ok]
    assert not bad, validate.format_table(rows, "tolerance 1e-4")
    assert weights.unused() == []
    return rows


@pytest.mark.parametrize("shortcut", [True, False])
def test_c2f(shortcut):
    check_block(ref.C2f(16, 24, 2, shortcut), lambda n, w, p, x: csp.c2f(n, w, p, x, 16, 24, 2, shortcut),
                (2, 16, 8, 10), min_rows=15)


@pytest.mark.parametrize("use_c3k", [False, True])
def test_c3k2_both_inner_forms(use_c3k):
    rows = check_block(ref.C3k2(16, 32, 2, use_c3k, 0.25),
                       lambda n, w, p, x: csp.c3k2(n, w, p, x, 16, 32, 2, use_c3k, 0.25), (2, 16, 6, 8), min_rows=20)
    assert any(".m.1.m.1.cv2" in r.name for r in rows) == use_c3k


def test_c3k():
    check_block(ref.C3k(16, 16, 2), lambda n, w, p, x: csp.c3k(n, w, p, x, 16, 16, 2), (1, 16, 5, 7), min_rows=15)


@pytest.mark.parametrize("act", [True, False])
def test_sppf_activation_is_a_parameter(act):
    check_block(ref.SPPF(32, 16, 5, act=act),
                lambda n, w, p, x: sppf_with(act, n, w, p, x), (2, 32, 7, 9), min_rows=8)
    with pytest.raises(AssertionError, match="FIRST OVER TOLERANCE"):  # the other choice is visibly different
        check_block(ref.SPPF(32, 16, 5, act=act),
                    lambda n, w, p, x: sppf_with(not act, n, w, p, x), (2, 32, 7, 9), 8)


def test_dwconv():
    check_block(ref.DWConv(16, 24, 3), lambda n, w, p, x: conv.dwconv(n, w, p, x, 16, 24, 3), (2, 16, 5, 5),
                min_rows=3)


@pytest.mark.parametrize("c,repeats,hw", [(256, 1, (4, 6)), (512, 2, (3, 3))])
def test_c2psa_attention_with_tensorrt_layers(c, repeats, hw):
    """c // 2 // 64 heads: 2 heads at 256 channels, 4 at 512; N = H*W positions attend to each other."""
    rows = check_block(ref.C2PSA(c, c, repeats), lambda n, w, p, x: psa.c2psa(n, w, p, x, c, c, repeats),
                       (2, c, *hw), min_rows=15)
    assert {"model.3.m.0.attn", "model.3.m.0.attn.pe", "model.3.m.0.ffn"} <= {r.name for r in rows}


def test_a_wrong_attention_scale_is_caught():
    """The comparison is sharp enough to see the attention's scale (key_dim ** -0.5) change."""
    block = ref.C2PSA(128, 128, 1)
    block.m[0].attn.scale *= 1.01
    with pytest.raises(AssertionError, match="FIRST OVER TOLERANCE"):
        check_block(block, lambda n, w, p, x: psa.c2psa(n, w, p, x, 128, 128, 1), (1, 128, 4, 4), min_rows=10)
