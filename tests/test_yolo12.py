"""YOLO12 (zoo/yolo/blocks/area_attention.py, zoo/yolo/tables/yolo12*.yaml): AAttn, ABlock and A2C2f against their
reference modules at FP32 1e-4 on the reference backend and ONNX Runtime, with area 4 (runs of positions that do not
start at a row) and area 1; the reference AAttn against a plain loop over areas and heads; the tables' parameter
counts against the ones ultralytics 8.4.190 prints in its own tables; a checkpoint pickled as ultralytics saves it,
validated per layer at FP32 and then at FP16 with the detection agreement. The tables themselves are validated layer
by layer with every other table by tests/test_yolo_tables.py."""
from __future__ import annotations

import argparse
import re

import numpy as np
import pytest
import torch

from layerwise import AsRow
from upstream_pickle import save_upstream_checkpoint
from wts.weight_map import WeightMap
from zoo.engine import validate
from zoo.engine.backends import ReferenceBackend
from zoo.engine.cli import main
from zoo.engine.model import randomize_batchnorm, state_dict_arrays
from zoo.engine.onnx.backend import OnnxBackend
from zoo.trt_api import trt
from zoo.yolo import walker
from zoo.yolo.blocks.area_attention import A2C2f, AAttn, ABlock, a2c2f, area_attention, area_block
from zoo.yolo.model import YoloModel
from zoo.yolo.random import randomize
from zoo.yolo.registry import Options, TableError, lookup

PREFIX = "model.6"

# (module, builder, its args after `x`, input shape)
BLOCKS = {
    "AAttn area 4, runs across rows": (AAttn, area_attention, [64, 2, 4], (2, 64, 4, 6)),
    "AAttn area 1": (AAttn, area_attention, [64, 2, 1], (1, 64, 3, 5)),
    "ABlock area 4": (ABlock, area_block, [32, 1, 1.2, 4], (1, 32, 4, 4)),
    "A2C2f residual (scales l, x)": (A2C2f, a2c2f, [64, 64, 1, True, 4, True, 1.2], (1, 64, 4, 4)),
    "A2C2f with C3k (the neck's a2=False)": (A2C2f, a2c2f, [48, 64, 1, False, -1], (2, 48, 4, 6)),
}




def random_block(cls, args) -> torch.nn.Module:
    torch.manual_seed(0)
    module = AsRow(cls(*args), 6)
    for m in module.modules():
        if isinstance(m, torch.nn.Conv2d):
            torch.nn.init.normal_(m.weight, std=(1.0 / m.weight[0].numel()) ** 0.5)
    if isinstance(module.model["6"], A2C2f) and module.model["6"].gamma is not None:
        torch.nn.init.uniform_(module.model["6"].gamma, 0.5, 1.5)  # 0.01 would hide the block's output
    randomize_batchnorm(module, torch.Generator().manual_seed(1))
    return module.eval()


@pytest.mark.parametrize("case", sorted(BLOCKS))
@pytest.mark.parametrize("backend", [ReferenceBackend, OnnxBackend], ids=["reference", "onnxruntime"])
def test_block_matches_its_module(case, backend):
    cls, build, args, shape = BLOCKS[case]
    module = random_block(cls, args)
    x = torch.randn(*shape, generator=torch.Generator().manual_seed(2))
    expected = validate.reference_outputs(module, x)
    weights = WeightMap(state_dict_arrays(module), "block")
    net = ReferenceBackend().create_network()
    inp = net.add_input("x", trt.float32, (-1, *shape[1:]))
    out = build(net, weights, PREFIX, inp, *args)
    names = validate.mark_comparable(net, set(expected))
    net.mark_output(out)
    got = backend().runner_for(net).run({"x": x.numpy()})
    rows = [validate.compare(n, got[n], expected[n], 1e-4) for n in names]
    rows.append(validate.compare("output", got[out.name], expected["__output__"], 1e-4))
    assert out.name == PREFIX and weights.unused() == []
    inner = {AAttn: "qkv", ABlock: "attn.pe", A2C2f: "cv1"}[cls]
    assert f"{PREFIX}.{inner}" in names, names
    bad = [r for r in rows if not r.ok]
    assert not bad, validate.format_table(rows, f"{case}: tolerance 1e-4")


def test_area_attention_is_attention_within_each_run_of_positions():
    """AAttn written out as loops: for each head and each of the `area` runs of N / area consecutive (row-major)
    positions, softmax(q^T k / sqrt(32)) over the run only; pe over v, then proj."""
    attn = random_block(AAttn, [64, 2, 4]).model["6"]
    x = torch.randn(1, 64, 4, 6, generator=torch.Generator().manual_seed(3))
    with torch.no_grad():
        qkv = attn.qkv(x).flatten(2)[0]                                      # (192, 24)
        mixed, v_all = torch.zeros(64, 24), torch.zeros(64, 24)
        for head in range(2):
            q, k, v = (qkv[head * 96 + part * 32: head * 96 + part * 32 + 32] for part in range(3))
            v_all[head * 32:(head + 1) * 32] = v
            for run in range(4):
                cols = slice(run * 6, run * 6 + 6)
                weights = torch.softmax(q[:, cols].T @ k[:, cols] / 32 ** 0.5, dim=1)  # (6 queries, 6 keys)
                mixed[head * 32:(head + 1) * 32, cols] = v[:, cols] @ weights.T
        expected = attn.proj(mixed.view(1, 64, 4, 6) + attn.pe(v_all.view(1, 64, 4, 6)))
        assert torch.allclose(attn(x), expected, atol=1e-5)


def test_a_level_whose_positions_do_not_split_into_the_areas_is_one_line():
    net = ReferenceBackend().create_network()
    module = random_block(AAttn, [64, 2, 4])
    inp = net.add_input("x", trt.float32, (-1, 64, 3, 5))
    with pytest.raises(TableError, match=r"^model\.6: area attention cuts the 3x5 = 15 positions of this level into "
                                         r"4 areas"):
        area_attention(net, WeightMap(state_dict_arrays(module), "block"), PREFIX, inp, 64, 2, 4)


def test_hidden_width_not_a_multiple_of_32_is_one_line():
    row = walker.official_table("yolo12")
    row["scales"]["tiny"] = [0.5, 0.0625, 1024]  # row 4: C3k2 512 -> 32; row 6: A2C2f 512 -> 32, hidden 16
    with pytest.raises(TableError, match=r"^row 6 \(A2C2f\): A2C2f's hidden width int\(32 x 0.5\) = 16 must be"):
        walker.resolve(row, "tiny")


# ultralytics 8.4.190 cfg/models/12/<table>.yaml, the comments "summary: ... N parameters"; they count the -cls
# tables with an 80-class head (the count of the backbone plus Classify(c, 80), not the 1000 of the file's nc).
UPSTREAM_PARAMETERS = {("yolo12", "n"): 2_602_288, ("yolo12", "s"): 9_284_096, ("yolo12", "m"): 20_199_168,
                       ("yolo12", "l"): 26_450_784, ("yolo12", "x"): 59_210_784, ("yolo12-seg", "n"): 2_855_056,
                       ("yolo12-seg", "l"): 28_756_992, ("yolo12-pose", "n"): 2_886_715,
                       ("yolo12-obb", "n"): 2_673_955, ("yolo12-obb", "x"): 61_119_939,
                       ("yolo12-cls", "n"): 1_820_976, ("yolo12-cls", "l"): 15_558_640}


@pytest.mark.parametrize("name,scale", sorted(UPSTREAM_PARAMETERS))
def test_parameter_counts_are_upstreams(name, scale):
    table = walker.official_table(name)
    if name.endswith("-cls"):
        table["nc"] = 80
    with torch.device("meta"):
        module = walker.build_module(walker.resolve(table, scale), Options())
    assert sum(p.numel() for p in module.parameters()) == UPSTREAM_PARAMETERS[name, scale]
    gammas = [m.gamma for m in module.modules() if isinstance(m, A2C2f) and m.gamma is not None]
    assert len(gammas) == (2 if scale in ("l", "x") else 0)  # the residual form only in the backbone's a2 rows


def test_a_pickled_yolo12n_validates_at_fp32_and_keeps_its_detections_at_fp16(tmp_path, capsys):
    """yolo12n as ultralytics saves it (FP16 pickle of DetectionModel with its yaml), random weights: every layer at
    FP32 1e-4, then FP16 (logits and softmax of the attention in FP32) at cosine >= 0.999 per layer, reproducing at
    least 80 % of the FP32 detections on the test images at 64 px (measured: 54 of 61, 88.5 %; yolo11n on the same
    terms: 93.8 % at 128 px, where yolo12n gives 80.9 %)."""
    table = {**walker.official_table("yolo12"), "scale": "n"}
    layers_ = walker.resolve(table, "n")
    module = randomize(walker.build_module(layers_, Options(strides=walker.head_strides(layers_, Options()))), 0)
    path = tmp_path / "yolo12n.pt"
    save_upstream_checkpoint(module.eval(), path, "ultralytics.nn.tasks", "DetectionModel", yaml=table,
                             names={i: f"thing{i}" for i in range(80)})
    assert main(YoloModel("yolo11"), ["validate", "--weights", str(path), "--input-size", "64"]) == 0
    captured = capsys.readouterr()
    out = captured.out
    assert "found yolo12n weights" in captured.err + out and "layers pass (tolerance 0.0001)" in out
    assert "model.6.m.0.0.attn " in out and "model.8.m.0.1.attn.pe " in out and "model.6.m.0.0.attn.qkv " in out
    assert main(YoloModel("yolo11"), ["validate", "--weights", str(path), "--input-size", "64", "--precision",
                                      "fp16", "--images", "tests/data/images"]) == 0
    out = capsys.readouterr().out
    assert "layers pass (cosine >= 0.999)" in out
    matched, total = map(int, re.search(r"fp16 reproduces (\d+) of (\d+) FP32 detections", out).groups())
    assert total >= 20 and matched >= 0.8 * total, out.splitlines()[-1]


def test_the_registry_builds_a2c2f_rows_and_the_head_is_yolo11s():
    """A2C2f is registered under its upstream name; a table with it gets YOLO11's depthwise class branch
    (ultralytics sets legacy = False for A2C2f rows)."""
    assert lookup("A2C2f", "test").module is A2C2f
    module = walker.build_module(walker.resolve(walker.official_table("yolo12"), "n"), Options(strides=(8, 16, 32)))
    head = module.model[21]
    assert head.legacy is False and len(head.cv3[0]) == 3 and len(head.cv3[0][0]) == 2


def test_every_yolo12_scale_is_found_again_from_its_value_counts():
    """From flat counts alone (meta device): m and l share width and max_channels; l adds the residual gamma and
    mlp_ratio 1.2 and twice the inner blocks, which tells them apart."""
    table = walker.official_table("yolo12")
    for scale in table["scales"]:
        with torch.device("meta"):
            module = walker.build_module(walker.resolve(table, scale), Options())
        counts = {k: np.broadcast_to(np.float32(0), (v.numel(),)) for k, v in module.state_dict().items()}
        config = YoloModel("yolo11")._config(WeightMap(counts, "w.wts"), argparse.Namespace(decode="layers"))
        assert (config.table_name, config.scale) == ("yolo12", scale)
