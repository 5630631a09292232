"""YOLOv10's and YOLOv9's blocks (zoo/yolo/blocks/v10.py, gelan.py, rep.py) and tables.

Each block against its reference module on the reference backend and ONNX Runtime at FP32 1e-4; the re-parameterised
convolutions in both forms a checkpoint may hold (branches, fused), the fused module held to the branch module (an
independent check of the fusing arithmetic) and the FP16 network, which folds the branches into one convolution,
held to the branch module at FP16 tolerance; CBLinear / CBFuse resizing up and down in a small table; pickled
checkpoints as ultralytics saves them (FP16, with their yaml), branches and fused, validated by the command; a
missing key and a wrong CBFuse row are one line naming the row."""
from __future__ import annotations

import copy

import pytest
import torch

from layerwise import walk_table
from test_yolo_blocks_extra import PREFIX, check_block, random_module
from upstream_pickle import save_upstream_checkpoint
from wts.weight_map import WeightMap
from layers.precision import Precision
from zoo.engine import validate
from zoo.engine.backends import ReferenceBackend
from zoo.engine.cli import main
from zoo.engine.folding import match_reparameterized
from zoo.engine.model import randomize_batchnorm, state_dict_arrays
from zoo.trt_api import trt
from zoo.yolo import walker
from zoo.yolo.model import YoloModel
from zoo.yolo.random import randomize
from zoo.yolo.registry import Options, TableError, lookup, make_divisible

# (block, constructor args, input shape)
BLOCKS = [
    ("SCDown", [16, 24, 3, 2], (2, 16, 9, 10)),
    ("CIB", [16, 16, True, 0.5, False], (2, 16, 6, 7)),
    ("CIB", [16, 24, True, 1.0, True], (1, 16, 9, 9)),
    ("C2fCIB", [16, 16, 2, True, True], (1, 16, 8, 8)),
    ("C2fCIB", [16, 24, 1, False, False], (1, 16, 6, 6)),
    ("PSA", [32, 32], (2, 32, 5, 6)),
    ("RepConv", [8, 16], (2, 8, 7, 9)),
    ("RepConv", [16, 16, 3, 1, 1, 1, 1, True, True], (2, 16, 7, 9)),
    ("RepConv", [16, 16, 3, 2, 1, 4], (1, 16, 9, 9)),
    ("RepVGGDW", [16], (2, 16, 9, 9)),
    ("RepBottleneck", [16, 16], (1, 16, 6, 6)),
    ("RepCSP", [16, 24, 2], (1, 16, 6, 6)),
    ("RepNCSPELAN4", [16, 24, 16, 8, 1], (2, 16, 8, 8)),
    ("RepNCSPELAN4", [16, 16, 32, 8, 2], (1, 16, 6, 6)),
    ("ELAN1", [16, 24, 16, 8], (1, 16, 8, 8)),
    ("AConv", [16, 24], (2, 16, 9, 10)),
    ("ADown", [16, 24], (2, 16, 9, 10)),
    ("SPPELAN", [16, 24, 8], (2, 16, 9, 9)),
    ("SPPELAN", [16, 24, 8, 3], (1, 16, 7, 7)),
    ("nn.Identity", [], (1, 3, 4, 4)),
]


@pytest.mark.parametrize("name,args,shape", BLOCKS, ids=[f"{b[0]}-{i}" for i, b in enumerate(BLOCKS)])
def test_block_against_its_module(name, args, shape):
    check_block(name, args, shape, min_rows=2)


# ------------------------------------------------------------------------------------- re-parameterised convs

REP = [("RepConv", [16, 16, 3, 1, 1, 1, 1, True, True], (2, 16, 7, 9)), ("RepConv", [8, 16, 3, 2], (1, 8, 9, 9)),
       ("RepVGGDW", [16], (2, 16, 9, 9))]


def _fused_copy(module):
    fused = copy.deepcopy(module)
    for m in fused.modules():
        if hasattr(m, "fused_in"):
            m.fuse()
    return fused


@pytest.mark.parametrize("name,args,shape", REP, ids=[r[0] + str(i) for i, r in enumerate(REP)])
def test_fused_form_is_the_branches_sum(name, args, shape):
    """fuse() of the reference module gives the branches' output (arithmetic checked against the unfused module),
    and its keys are what ultralytics' fused blocks hold."""
    module = random_module(name, args)
    fused = _fused_copy(module)
    keys = set(fused.state_dict())
    assert {f"{PREFIX}.conv.weight", f"{PREFIX}.conv.bias"} <= keys and not any(".conv1." in k for k in keys)
    x = torch.randn(*shape, generator=torch.Generator().manual_seed(3))
    with torch.no_grad():
        want, got = module(x), fused(x)
    assert (got - want).abs().max().item() <= 1e-5 * max(1.0, want.abs().max().item())


@pytest.mark.parametrize("name,args,shape", REP, ids=[r[0] + str(i) for i, r in enumerate(REP)])
def test_fused_weights_build_one_convolution(name, args, shape):
    """Weights with the fused keys: the network reads them as one biased convolution (every key used), and it
    equals the branch module; the module made from the keys (match_reparameterized) is the fused form."""
    module = random_module(name, args)
    fused = _fused_copy(module)
    weights = WeightMap(state_dict_arrays(fused), "fused")
    rebuilt = match_reparameterized(random_module(name, args), weights.keys())
    assert set(rebuilt.state_dict()) == set(weights.keys())
    x = torch.randn(*shape, generator=torch.Generator().manual_seed(4))
    net = ReferenceBackend().create_network()
    inp = net.add_input("x", trt.float32, (-1, *shape[1:]))
    out = lookup(name, "test").build(net, weights, PREFIX, inp, *args)
    net.mark_output(out)
    got = ReferenceBackend().runner_for(net).run({"x": x.numpy()})[PREFIX]
    with torch.no_grad():
        want = module(x)
    assert weights.unused() == []
    assert (torch.as_tensor(got) - want).abs().max().item() <= 1e-4 * max(1.0, want.abs().max().item())
    assert sum(1 for i in range(net.num_layers) if net.get_layer(i).type == trt.LayerType.CONVOLUTION) == 1


@pytest.mark.parametrize("name,args,shape", REP, ids=[r[0] + str(i) for i, r in enumerate(REP)])
def test_fp16_network_folds_the_branches(name, args, shape):
    """In FP16 the branch weights become one convolution whose kernel was summed in FP32; it matches the branch
    module at FP16 tolerance."""
    module = random_module(name, args)
    weights = WeightMap(state_dict_arrays(module), "branches")
    weights.precision = Precision("fp16")
    x = torch.randn(*shape, generator=torch.Generator().manual_seed(5))
    net = ReferenceBackend().create_network()
    inp = net.add_input("x", trt.float16, (-1, *shape[1:]))
    out = lookup(name, "test").build(net, weights, PREFIX, inp, *args)
    net.mark_output(out)
    got = torch.as_tensor(ReferenceBackend().runner_for(net).run({"x": x.half().numpy()})[PREFIX]).float()
    with torch.no_grad():
        want = module(x)
    assert weights.unused() == []
    assert sum(1 for i in range(net.num_layers) if net.get_layer(i).type == trt.LayerType.CONVOLUTION) == 1
    assert (got - want).abs().max().item() <= 1e-2 * max(1.0, want.abs().max().item())


# ------------------------------------------------------------------------------------- tables

def validate_table(table: dict, scale, size: int = 64, seed: int = 0) -> list[str]:
    """The table's network from its random module's weights against the module, every named tensor at 1e-4; the
    names compared."""
    resolved = walker.resolve(table, scale)
    options = Options(strides=walker.head_strides(resolved, Options()))
    module = randomize(walker.build_module(resolved, options), seed=seed)
    weights = WeightMap(state_dict_arrays(module), "table")
    small = torch.rand(1, 3, 8, 8, generator=torch.Generator().manual_seed(1))
    x = torch.nn.functional.interpolate(small, size=(size, size), mode="bilinear", align_corners=False)
    compared, _ = walk_table(module, weights, resolved, options, x)
    assert weights.unused() == []
    return compared


def cb_table() -> dict:
    """yolov9e's second branch in small: CBLinear rows at strides 2, 4 and 8, fused into rows at strides 2, 4
    (both directions of the nearest resize), then a classifier."""
    return {"nc": 5, "backbone": [
        [-1, 1, "nn.Identity", []],
        [-1, 1, "Conv", [8, 3, 2]],              # 1 stride 2
        [-1, 1, "Conv", [16, 3, 2]],             # 2 stride 4
        [-1, 1, "ADown", [16]],                  # 3 stride 8
        [1, 1, "CBLinear", [[8]]],               # 4
        [2, 1, "CBLinear", [[8, 16]]],           # 5
        [3, 1, "CBLinear", [[8, 16, 24]]],       # 6
        [0, 1, "Conv", [8, 3, 2]],               # 7 stride 2
        [[4, 5, 6, -1], 1, "CBFuse", [[0, 0, 0]]],   # 8: same size, up x2, up x4
        [-1, 1, "Conv", [16, 3, 2]],             # 9 stride 4
        [[5, 6, -1], 1, "CBFuse", [[1, 1]]],     # 10
        [-1, 1, "AConv", [24]],                  # 11 stride 8
        [[6, -1], 1, "CBFuse", [[2]]],           # 12
        [-1, 1, "Classify", ["nc"]]]}


def test_cblinear_and_cbfuse_in_a_table():
    names = set(validate_table(cb_table(), None, size=32))
    assert {"model.4", "model.5", "model.6.conv", "model.8", "model.10", "model.12"} <= names


def test_cbfuse_rows_that_do_not_fit_are_one_line():
    table = cb_table()
    table["backbone"][8][3] = [[0, 1, 0]]       # part 1 of row 5 has 16 channels, row 7 has 8
    with pytest.raises(TableError, match=r"^row 8 \(CBFuse\): part 1 of input 1 has 16 channels"):
        walker.resolve(table)
    table = cb_table()
    table["backbone"][8][3] = [[0, 0]]
    with pytest.raises(TableError, match=r"^row 8 \(CBFuse\): CBFuse takes one part index per CBLinear row"):
        walker.resolve(table)
    table = cb_table()
    table["backbone"][8][0] = [4, 5, 3, -1]     # row 3 is no CBLinear row
    with pytest.raises(TableError, match=r"^row 8 \(CBFuse\): input 2 has no part 0"):
        walker.resolve(table)


HIDDEN = {"RepNCSPELAN4": (1, 2), "ELAN1": (1, 2), "SPPELAN": (1,)}  # arg positions of the unscaled counts


def small_v9(name: str) -> dict:
    """An official YOLOv9 table at width 1/8 with its hidden counts divided the same way, 3 classes."""
    table = walker.official_table(name)
    table.update(nc=3, width_multiple=0.125)
    for row in table["backbone"] + table["head"]:
        for i in HIDDEN.get(row[2], ()):
            row[3][i] = make_divisible(row[3][i] / 8)
    return table


def _pickle(table: dict, path, fuse_every: int = 0, seed: int = 0):
    """A pickled checkpoint; with fuse_every = k, every k-th re-parameterised block fused (what ultralytics'
    model.fuse() leaves, BatchNorms of the other Convs kept), so one file holds both forms."""
    torch.manual_seed(seed)
    module = walker.build_module(walker.resolve(table, table.get("scale")), Options())
    randomize_batchnorm(module, torch.Generator().manual_seed(seed))   # cheap: no calibration passes
    if fuse_every:
        rep = [m for m in module.modules() if hasattr(m, "fused_in")]
        for m in rep[::fuse_every]:
            m.fuse()
    save_upstream_checkpoint(module, path, "ultralytics.nn.tasks", "DetectionModel", yaml=table,
                             names={i: f"thing{i}" for i in range(table["nc"])})
    return module


def test_pickled_yolov9_checkpoint_with_fused_and_branch_repconvs_validates(tmp_path, capsys):
    path = tmp_path / "v9.pt"
    module = _pickle(small_v9("yolov9t"), path, fuse_every=2)
    forms = [hasattr(m, "conv1") for m in module.modules() if hasattr(m, "fused_in")]
    assert any(forms) and not all(forms)
    assert main(YoloModel("yolov9"), ["validate", "--weights", str(path), "--input-size", "64",
                                      "--decode", "layers"]) == 0
    out = capsys.readouterr().out
    assert "layers pass (tolerance 0.0001)" in out
    assert "model.4.cv2.0.m.0.cv1.conv1" not in out and "model.4.cv2.0.m.1.cv1.conv1" in out  # fused, branches


def test_pickled_yolov10_checkpoint_with_fused_and_branch_repvggdw_validates(tmp_path, capsys):
    """yolov10s narrowed: its large-kernel C2fCIB rows (8 and 22) hold one RepVGGDW each, the first fused."""
    table = walker.official_table("yolov10s")
    table.update(nc=3, scales={"s": [0.33, 0.125, 1024]})
    path = tmp_path / "v10.pt"
    module = _pickle(table, path, fuse_every=2)
    assert not hasattr(module.model[8].m[0].cv1[2], "conv1") and hasattr(module.model[22].m[0].cv1[2], "conv1")
    assert main(YoloModel("yolov10"), ["validate", "--weights", str(path), "--input-size", "64",
                                       "--decode", "layers"]) == 0
    out = capsys.readouterr().out
    assert "layers pass (tolerance 0.0001)" in out
    assert "model.8.m.0.cv1.2.conv1" not in out and "model.22.m.0.cv1.2.conv1" in out


def test_a_missing_key_is_one_line_naming_row_and_key(tmp_path, capsys):
    path = tmp_path / "v9.pt"
    module = _pickle(small_v9("yolov9t"), path)
    del module.model[4].cv2[0].m[0].cv1.conv2
    save_upstream_checkpoint(module, path, "ultralytics.nn.tasks", "DetectionModel", yaml=small_v9("yolov9t"))
    assert main(YoloModel("yolov9"), ["validate", "--weights", str(path), "--input-size", "64"]) == 2
    err = [line for line in capsys.readouterr().err.strip().splitlines() if "error:" in line]
    assert len(err) == 1
    assert "row 4 (RepNCSPELAN4): model.4.cv2.0.m.0.cv1.conv2.conv.weight [4, 4, 1, 1] is missing" in err[0], err
