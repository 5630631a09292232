"""YOLO26 and the end-to-end head (zoo/yolo/blocks: sppf.py, csp.py, detect.py, end2end.py): its backbone forms
(SPPF with n pools and a shortcut, C3k2's attention form) built from the registry against their reference modules
on the reference backend and ONNX Runtime at FP32 1e-4; the tables' parameter counts against upstream's; the
end-to-end head against an independent PyTorch reading of upstream's eval computation."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from layerwise import AsRow, args
from test_yolo_blocks_extra import check_block
from upstream_pickle import save_upstream_checkpoint
from wts.weight_map import WeightMap
from zoo.engine.backends import ReferenceBackend
from zoo.engine.checkpoint import load_state_dict
from zoo.engine.cli import main
from zoo.engine.networks import define_network
from zoo.engine.model import randomize_batchnorm, state_dict_arrays
from zoo.engine.onnx.backend import OnnxBackend
from zoo.trt_api import trt
from zoo.yolo import walker
from zoo.yolo.blocks.end2end import select_rows
from zoo.yolo.model import YoloModel
from zoo.yolo.random import randomize
from zoo.yolo.registry import Options, TableError, lookup, using


@pytest.mark.parametrize("args", [[32, 32, 5, 3, True], [32, 16, 5, 2, True], [16, 16, 3, 3, False]])
def test_sppf_with_pools_and_shortcut(args):
    check_block("SPPF", args, (1, args[0], 8, 8), 4, Options(sppf_act=False))


def test_sppf_shortcut_adds_the_input():
    """A cv2 of zeros leaves exactly the input when the shortcut is on (and zeros when it is off)."""
    from zoo.yolo.registry import lookup
    x = torch.randn(1, 8, 6, 6)
    for shortcut in (True, False):
        m = lookup("SPPF", "t").module(8, 8, 5, 3, shortcut).eval()
        torch.nn.init.zeros_(m.cv2.conv.weight)
        m.cv2.bn.bias.data.fill_(-50.0)     # SiLU(-50) ~ 0
        y = m(x)
        assert torch.allclose(y, x if shortcut else torch.zeros_like(x), atol=1e-6)


@pytest.mark.parametrize("args", [[32, 32, 1, True, 0.5, True], [32, 64, 2, False, 0.5, True]])
def test_c3k2_attention_form(args):
    rows = check_block("C3k2", args, (1, args[0], 4, 4), 6)
    assert any(".m.0.1.attn" in r.name for r in rows)


def test_yolo26_tables_have_upstreams_parameter_counts():
    """ultralytics 8.4.190 cfg/models/26/<table>.yaml, scale n (nc 80, kpt 17x3 for pose): "... N parameters",
    the model as built (both branches, training's parts)."""
    counts = {"yolo26": 2_572_280, "yolo26-p2": 2_662_400, "yolo26-p6": 4_063_872, "yolo26-pose": 3_747_554,
              "yolo26-obb": 2_715_614, "yolo26-seg": 3_126_280,
              "yolo11-cls": 2_812_104}   # yolo26-cls's table is yolo11-cls's, row for row
    for name, count in counts.items():
        table = walker.official_table(name)
        with torch.device("meta"):
            module = walker.build_module(walker.resolve(table, "n"), Options())
        assert sum(p.numel() for p in module.parameters()) == count, name


# ------------------------------------------------------------------------------------------- end-to-end selection


def upstream_rows(predictions: torch.Tensor, nc: int, max_det: int) -> torch.Tensor:
    """ultralytics 8.4's eval postprocess, read independently: (B, 4 + nc + extra, A) -> (B, k, 6 + extra); top-k
    anchors by their best score, then top-k of their (anchor, class) scores flattened anchor-major, class = index mod
    nc, anchor = the first top-k's entry at index div nc."""
    x = predictions.permute(0, 2, 1)
    boxes, scores, extra = x[..., :4], x[..., 4:4 + nc], x[..., 4 + nc:]
    k = min(max_det, x.shape[1])
    first = torch.topk(scores.max(dim=-1).values, k, dim=1).indices
    picked = torch.stack([s[i] for s, i in zip(scores, first)])                       # (B, k, nc)
    top, index = torch.topk(picked.reshape(x.shape[0], -1), k, dim=1)
    anchor = torch.stack([f[i] for f, i in zip(first, index // nc)])
    rows = [torch.cat([b[a], t[:, None], (i % nc)[:, None].float(), e[a]], 1)
            for b, e, a, t, i in zip(boxes, extra, anchor, top, index)]
    return torch.stack(rows)


def run_selection(predictions: torch.Tensor, nc: int, max_det: int, backend) -> np.ndarray:
    from zoo.yolo.blocks.end2end import select_rows_network
    net = ReferenceBackend().create_network()
    inp = net.add_input("p", trt.float32, (-1, *predictions.shape[1:]))
    out = select_rows_network(net, inp, nc, max_det, "rows")
    net.mark_output(out)
    return np.asarray(backend.runner_for(net).run({"p": predictions.numpy()})["rows"])


@pytest.mark.parametrize("nc,extra,anchors,max_det", [(5, 0, 40, 12), (3, 4, 30, 300), (1, 1, 25, 7)])
def test_selection_is_upstreams_on_every_executor(nc, extra, anchors, max_det):
    """Batch 2, distinct scores: module and network rows equal upstream's reading, order included."""
    g = torch.Generator().manual_seed(nc)
    predictions = torch.cat([torch.randn(2, 4, anchors, generator=g) * 50,
                             torch.rand(2, nc, anchors, generator=g),
                             torch.randn(2, extra, anchors, generator=g)], 1)
    expected = upstream_rows(predictions, nc, max_det)
    assert expected.shape == (2, min(max_det, anchors), 6 + extra)
    torch.testing.assert_close(select_rows(predictions, nc, max_det), expected, rtol=0, atol=0)
    for backend in (ReferenceBackend(), OnnxBackend()):
        np.testing.assert_allclose(run_selection(predictions, nc, max_det, backend), expected.numpy(), rtol=0,
                                   atol=1e-6)


def test_max_det_above_tensorrts_topk_limit_is_one_line():
    with pytest.raises(TableError, match=r"--max-det 4000: the end-to-end head takes 1\.\.3840"):
        run_selection(torch.rand(1, 6, 5000), 2, 4000, ReferenceBackend())


# ------------------------------------------------------------------------------------------ the heads, end to end

LEVELS = ((1, 16, 8, 8), (1, 32, 4, 4), (1, 64, 2, 2))
HEADS = {"v10Detect": [3], "Detect": [3], "Segment26": [3, 4, 16], "Pose26": [2, [3, 3]], "OBB26": [2, 1],
         "Segment": [3, 4, 16], "Pose": [2, [3, 2]], "OBB": [2, 1]}




def head_module(name: str, opts: Options, reg_max: int = 1, end2end: bool = True) -> tuple[torch.nn.Module, list]:
    ch = [s[1] for s in LEVELS]
    args = [*HEADS[name], ch, False, 16 if name == "v10Detect" else reg_max, end2end, True, True]
    torch.manual_seed(3)
    with using(opts):
        head = lookup(name, "test").module(*args)
    module = AsRow(head, 9)
    for m in module.modules():
        if isinstance(m, (torch.nn.Conv2d, torch.nn.ConvTranspose2d)):
            torch.nn.init.normal_(m.weight, std=(1.0 / m.weight[0].numel()) ** 0.5)
    randomize_batchnorm(module, torch.Generator().manual_seed(1))
    return module.eval(), args


def head_network(name: str, args: list, module, opts: Options, backend) -> tuple[dict, list]:
    weights = WeightMap(state_dict_arrays(module), "head")
    net = ReferenceBackend().create_network()
    xs = [net.add_input(f"x{i}", trt.float32, (-1, *s[1:])) for i, s in enumerate(LEVELS)]
    with using(opts):
        outs = lookup(name, "test").build(net, weights, "model.9", xs, *args)
    outs = outs if isinstance(outs, list) else [outs]
    for o in outs:
        net.mark_output(o)
    inputs = {f"x{i}": torch.randn(2, *s[1:], generator=torch.Generator().manual_seed(i)).numpy()
              for i, s in enumerate(LEVELS)}
    assert weights.unused() == []
    return backend.runner_for(net).run(inputs), [o.name for o in outs], inputs


@pytest.mark.parametrize("name", ["v10Detect", "Segment26", "Pose26", "OBB26", "Pose"])
def test_each_task_head_end_to_end_is_upstreams_selection(name):
    """The one-to-one branch's dense predictions (its decode in PyTorch), selected as upstream does, are the rows
    of the network on both executors: boxes xyxy (OBB: rotated xywh), score, class, then the mask coefficients,
    keypoints or angle of the same anchor."""
    opts = Options(strides=(8, 16, 32), max_det=20)
    module, args = head_module(name, opts)
    head = module.model["9"]
    assert head.one2one
    for backend in (ReferenceBackend(), OnnxBackend()):
        got, names, inputs = head_network(name, args, module, opts, backend)
        xs = [torch.from_numpy(inputs[f"x{i}"]) for i in range(3)]
        with torch.no_grad():
            head.finish = lambda p: p           # the dense one-to-one predictions, before any selection
            dense = module(xs)
            del head.finish
            out = module(xs)
        dense, out = (dense[0], out[0]) if isinstance(out, tuple) else (dense, out)
        expected = upstream_rows(dense, head.nc, 20)
        assert expected.shape[1] == 20 and out.shape == expected.shape
        torch.testing.assert_close(out, expected, rtol=1e-5, atol=1e-5)
        np.testing.assert_allclose(np.asarray(got[names[0]]), expected.numpy(), rtol=1e-4, atol=1e-4 * float(
            expected.abs().max()))


# ------------------------------------------------------------------------------- checkpoints and the commands


def random_yolo26(name: str = "yolo26", nc: int = 3) -> tuple[dict, torch.nn.Module]:
    table = walker.official_table(name)
    table.update(nc=nc, scale="n")
    module = walker.build_module(walker.resolve(table, "n"), Options(sppf_act=False))
    return table, randomize(module, seed=0).eval()


def network_rows(model, weights: WeightMap, args, x: torch.Tensor, backend=None) -> tuple[dict, dict]:
    """(config, outputs) of the model's network built from `weights` as the commands do."""
    backend = backend or ReferenceBackend()
    config = model.config_from_weights(weights, args)
    net, names = define_network(model, backend, weights, config)
    return config, backend.runner_for(net).run({model.input_name: x.numpy()})


def test_a_pickled_yolo26_checkpoint_validates_and_gives_upstreams_rows(tmp_path):
    """As ultralytics 8.4 saves yolo26n (pickled model in FP16, its yaml with end2end: True): `validate` passes
    every layer at FP32 1e-4, and the engine's rows are upstream's selection of the checkpoint's one-to-one
    predictions."""
    table, module = random_yolo26()
    path = tmp_path / "yolo26n.pt"
    save_upstream_checkpoint(module, path, "ultralytics.nn.tasks", "DetectionModel", yaml=table,
                             names={i: f"thing{i}" for i in range(3)})
    assert main(YoloModel("yolo26"), ["validate", "--weights", str(path), "--input-size", "64"]) == 0
    module = module.float()                      # the FP16 values the file holds, in FP32
    weights = WeightMap(load_state_dict(path).tensors, str(path))
    weights.meta = load_state_dict(path).meta
    x = torch.rand(2, 3, 64, 64, generator=torch.Generator().manual_seed(5))
    config, got = network_rows(YoloModel("yolo26"), weights, args(input_size=(64, 64)), x)
    assert config["end2end"] and config["variant"] == "yolo26n" and config["max_det"] == 300
    head = module.model[-1]
    with torch.no_grad():
        head.finish = lambda p: p
        dense = module(x)
    expected = upstream_rows(dense, 3, 300)
    assert expected.shape == (2, 84, 6)          # 8x8 + 4x4 + 2x2 anchors at 64 px: k = min(300, 84)
    np.testing.assert_allclose(got["model.23"], expected.numpy(), rtol=1e-4,
                               atol=1e-4 * float(expected.abs().max()))


def test_the_head_form_is_read_from_the_keys_and_max_det_is_recorded():
    """A state_dict without a yaml: one2one keys beside cv2/cv3 -> end to end by default, --head one2many gives
    the dense (B, 4 + nc, A) output for NMS; a fused file (one2one only) refuses --head one2many in one line; a
    YOLO11 file refuses --head one2one. --max-det is the rows of the output and is in the header."""
    _, module = random_yolo26()
    x = torch.rand(1, 3, 64, 64, generator=torch.Generator().manual_seed(6))
    both = state_dict_arrays(module)
    config, got = network_rows(YoloModel("yolo26"), WeightMap(both, "w.pt"), args(input_size=(64, 64), max_det=10),
                               x)
    assert config["end2end"] and config["max_det"] == 10 and got["model.23"].shape == (1, 10, 6)
    model = YoloModel("yolo26")
    config = model.config_from_weights(WeightMap(both, "w.pt"), args(input_size=(64, 64), head="one2many"))
    with torch.no_grad():
        assert not config["end2end"] and model.reference_module(config)(x).shape == (1, 4 + 3, 84)
    fused = {k: v for k, v in both.items() if not k.startswith(("model.23.cv2.", "model.23.cv3."))}
    config = model.config_from_weights(WeightMap(fused, "fused.pt"), args(input_size=(64, 64)))
    with torch.no_grad():
        assert config["end2end"] and config["table"]["one2many"] is False
        assert model.reference_module(config)(x).shape == (1, 84, 6)
    with pytest.raises(TableError, match="--head one2many: these weights hold only the one-to-one branch"):
        YoloModel("yolo26").config_from_weights(WeightMap(fused, "fused.pt"), args(head="one2many"))
    yolo11 = walker.build_module(walker.resolve(walker.official_table("yolo11"), "n"), Options())
    with pytest.raises(TableError, match="--head one2one: these weights have no one-to-one"):
        YoloModel("yolo26").config_from_weights(WeightMap(state_dict_arrays(yolo11), "y11.pt"), args(head="one2one"))


def test_infer_thresholds_the_end_to_end_rows_without_nms(tmp_path):
    """`infer` on the end-to-end output keeps the rows above --conf (the network already chose them): the records
    are the network's rows above the threshold, in order, with --classes and --max-det applied."""
    from zoo.tasks.detect import end_to_end_rows
    rows = torch.tensor([[[0, 0, 4, 4, 0.9, 1], [1, 1, 5, 5, 0.8, 1], [2, 2, 6, 6, 0.3, 0], [0, 0, 1, 1, 0.1, 2]]],
                        dtype=torch.float32)
    kept = end_to_end_rows(rows, 0.25, None, 300)[0]
    assert kept.tolist() == rows[0, :3].tolist()           # overlapping boxes of one class both stay: no NMS
    assert end_to_end_rows(rows, 0.25, [0], 300)[0].tolist() == [rows[0, 2].tolist()]
    assert end_to_end_rows(rows, 0.05, None, 2)[0].shape == (2, 6)


def test_validate_faces_rows_of_equal_scores_but_hides_no_wrong_value():
    """align_rows only permutes rows per image: rows listed in another order face their twins, a changed value
    still differs."""
    from zoo.yolo.blocks.end2end import align_rows
    expected = torch.tensor([[[0, 0, 2, 2, 0.5, 1], [5, 5, 9, 9, 0.5, 2], [1, 1, 3, 3, 0.4, 0]]], dtype=torch.float32)
    swapped = expected[:, [1, 0, 2]]
    assert torch.equal(align_rows(swapped, expected), expected)
    wrong = swapped.clone()
    wrong[0, 2, 0] = 7.0
    assert (align_rows(wrong, expected) - expected).abs().max() == 6.0
