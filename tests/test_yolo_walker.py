"""The YOLO walker (zoo/yolo): every block of the registry against its own reference module at FP32 1e-4; the
walker's modules against the independent hand-written references of tests/reference_yolov5*.py and
tests/reference_yolov8*.py (same state_dict, same outputs); a user's edited table in a pickled checkpoint builds and
validates; an unknown block and a shape disagreement are one line naming the row."""
from __future__ import annotations

import argparse

import numpy as np
import pytest
import torch

from layerwise import AsRow
import reference_yolov5 as ref5
import reference_yolov5_tasks as ref5_tasks
import reference_yolov8 as ref8
import reference_yolov8_tasks as ref8_tasks
from upstream_pickle import save_upstream_checkpoint
from wts.weight_map import WeightMap
from zoo.engine import validate
from zoo.trt_api import trt
from zoo.engine.backends import ReferenceBackend
from zoo.engine.cli import main
from zoo.engine.model import randomize_batchnorm, state_dict_arrays
from zoo.yolo import walker
from zoo.yolo.config import line_tables
from zoo.yolo.model import YoloModel
from zoo.yolo.random import randomize
from zoo.yolo.registry import Options, TableError, lookup, using

# (block, constructor args, input shapes (one, or several for a list `from`), heads' strides)
BLOCKS = [
    ("Conv", [8, 16, 3, 2], [(2, 8, 10, 12)], ()),
    ("Conv", [8, 16, 5, 2, None, 1, 1, False], [(1, 8, 10, 12)], ()),
    ("Conv", [3, 8, 6, 2, 2], [(1, 3, 12, 16)], ()),
    ("DWConv", [16, 16, 3, 1], [(2, 16, 7, 9)], ()),
    ("Concat", [1], [(2, 8, 6, 6), (2, 4, 6, 6)], ()),
    ("nn.Upsample", [None, 2, "nearest"], [(1, 8, 5, 7)], ()),
    ("Bottleneck", [16, 16, True], [(2, 16, 6, 8)], ()),
    ("C3", [16, 24, 2, True], [(2, 16, 6, 8)], ()),
    ("C3", [16, 16, 1, False], [(1, 16, 6, 8)], ()),
    ("C3k", [16, 16, 2, True, 1, 0.5, 3], [(1, 16, 5, 7)], ()),
    ("C2f", [16, 24, 2, True], [(2, 16, 8, 10)], ()),
    ("C3k2", [16, 32, 2, False, 0.25], [(2, 16, 6, 8)], ()),
    ("C3k2", [16, 32, 1, True, 0.5], [(2, 16, 6, 8)], ()),
    ("SPPF", [32, 16, 5], [(2, 32, 7, 9)], ()),
    ("SPPF", [32, 16, 3], [(1, 32, 7, 9)], ()),
    ("C2PSA", [256, 256, 1], [(1, 256, 3, 4)], ()),
    ("Classify", [16, 10], [(2, 16, 5, 5)], ()),
    ("yolov5.Classify", [16, 10], [(2, 16, 5, 5)], ()),
    ("Detect", [5, [16, 32], True, 16], [(2, 16, 8, 8), (2, 32, 4, 4)], (8, 16)),
    ("Detect", [5, [16, 32], False, 16], [(1, 16, 8, 8), (1, 32, 4, 4)], (8, 16)),
    ("Segment", [3, 32, 24, [16, 32], False, 16], [(1, 16, 8, 8), (1, 32, 4, 4)], (8, 16)),
    ("Pose", [2, [5, 3], [16, 32], True, 16], [(1, 16, 8, 8), (1, 32, 4, 4)], (8, 16)),
    ("Pose", [2, [4, 2], [16, 32], False, 16], [(1, 16, 8, 8), (1, 32, 4, 4)], (8, 16)),
    ("OBB", [4, 1, [16, 32], False, 16], [(1, 16, 8, 8), (1, 32, 4, 4)], (8, 16)),
    ("yolov5.Detect", [4, [[10, 13, 16, 30, 33, 23], [30, 61, 62, 45, 59, 119]], [16, 32]],
     [(2, 16, 8, 8), (2, 32, 4, 4)], (8, 16)),
    ("yolov5.Segment", [4, [[10, 13, 16, 30, 33, 23], [30, 61, 62, 45, 59, 119]], 32, 16, [16, 32]],
     [(1, 16, 8, 8), (1, 32, 4, 4)], (8, 16)),
]




CASES = [(*b, "layers") for b in BLOCKS] + [(*b, "plugin") for b in BLOCKS if b[3] and "OBB" not in b[0]]


@pytest.mark.parametrize("name,args,shapes,strides,decode", CASES,
                         ids=[f"{c[0]}-{i}-{c[4]}" for i, c in enumerate(CASES)])
def test_every_block_against_its_reference_module(name, args, shapes, strides, decode):
    block = lookup(name, "test")
    options = Options(strides=strides, decode=decode)
    with using(options):
        module = AsRow(block.module(*args))
    generator = torch.Generator().manual_seed(3)
    for m in module.modules():  # N(0, 1/fan_in) weights; DFL's fixed bins (no grad) stay
        if isinstance(m, (torch.nn.Conv2d, torch.nn.ConvTranspose2d, torch.nn.Linear)) and m.weight.requires_grad:
            with torch.no_grad():
                m.weight.copy_(torch.randn(m.weight.shape, generator=generator) / m.weight[0].numel() ** 0.5)
                if m.bias is not None:
                    m.bias.copy_(torch.randn(m.bias.shape, generator=generator) * 0.1)
    randomize_batchnorm(module, torch.Generator().manual_seed(1))
    module.eval()
    xs = [torch.randn(*s, generator=torch.Generator().manual_seed(i)) for i, s in enumerate(shapes)]
    x = xs if len(xs) > 1 else xs[0]
    expected = validate.reference_outputs(module, x)
    weights = WeightMap(state_dict_arrays(module), "block")
    backend = ReferenceBackend()
    net = backend.create_network()
    inputs = [net.add_input(f"x{i}", trt.float32, (-1, *s[1:])) for i, s in enumerate(shapes)]
    with using(options):
        out = block.build(net, weights, "model.3", inputs if len(inputs) > 1 else inputs[0], *args)
    outs = out if isinstance(out, list) else [out]
    for o in outs:
        net.mark_output(o)
    names = validate.mark_comparable(net, set(expected))
    got = backend.runner_for(net).run({f"x{i}": t.numpy() for i, t in enumerate(xs)})
    rows = [validate.compare(n, got[n], expected[n], 1e-4) for n in names]
    reference = module(x)
    for o, r in zip(outs, reference if isinstance(reference, tuple) else [reference]):
        rows.append(validate.compare(o.name, got[o.name], r, 1e-4))
    assert outs[0].name == "model.3"
    bad = [r for r in rows if not r.ok]
    assert not bad, validate.format_table(rows, "tolerance 1e-4")
    assert weights.unused() == []


def _reference_cases():
    arch = ref8.architecture
    return [
        ("yolov8", "n", lambda: ref8.YoloV8(arch("yolov8", "n"))),
        ("yolov8", "m", lambda: ref8.YoloV8(arch("yolov8", "m"))),
        ("yolo11", "n", lambda: ref8.YoloV8(arch("yolo11", "n"))),
        ("yolo11", "m", lambda: ref8.YoloV8(arch("yolo11", "m"))),
        ("yolov8-seg", "n", lambda: ref8_tasks.task_module(arch("yolov8", "n"), "segment")),
        ("yolo11-pose", "n", lambda: ref8_tasks.task_module(arch("yolo11", "n"), "pose")),
        ("yolo11-obb", "s", lambda: ref8_tasks.task_module(arch("yolo11", "s"), "obb")),
        ("yolov8-cls", "n", lambda: ref8_tasks.task_module(arch("yolov8", "n", 1000), "classify")),
        ("yolo11-cls", "n", lambda: ref8_tasks.task_module(arch("yolo11", "n", 1000), "classify")),
        ("yolov5v7", "n", lambda: ref5.build_yolov5("n")),
        ("yolov5v7", "x", lambda: ref5.build_yolov5("x")),
        ("yolov5v7-p6", "s", lambda: ref5.build_yolov5("s", p6=True)),
        ("yolov5v7-seg", "n", lambda: ref5_tasks.YoloV5Segment(80, 0.33, 0.25)),
        ("yolov5v7-cls", "s", lambda: ref5_tasks.YoloV5Classify(1000, 0.33, 0.5)),
    ]


@pytest.mark.parametrize("table,scale,reference", _reference_cases(), ids=[f"{t}{s}" for t, s, _ in _reference_cases()])
def test_walker_module_is_the_independent_reference(table, scale, reference):
    """The walker's module loads the hand-written reference's state_dict (strict: same keys, same shapes) and gives
    its outputs; the configuration solved from the reference's weights is this table at this scale."""
    ref = reference().eval()
    state = ref.state_dict()
    config = YoloModel("yolov5" if table.startswith("yolov5") else "yolov8")._config(
        WeightMap({k: v.numpy() for k, v in state.items()}, "w"), argparse.Namespace(decode="plugin"))
    assert (config.table_name, config.scale) == (table, scale)
    module = config.module()
    module.load_state_dict(state, strict=True)
    x = torch.rand(1, 3, 64, 64 if "cls" in table else 128, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        got, want = module(x), ref(x)
    for g, w in zip(got if isinstance(got, tuple) else [got], want if isinstance(want, tuple) else [want]):
        assert g.shape == w.shape
        assert (g - w).abs().max().item() <= 1e-4 * max(1.0, w.abs().max().item())


@pytest.mark.parametrize("name", line_tables("ultralytics") + line_tables("yolov5"))
def test_each_official_table_is_found_again_from_flat_weights(name):
    """Every official table at its smallest scale, with other class counts, from a .wts-like flat weight map."""
    table = walker.official_table(name)
    table["nc"] = 3
    scale = next(iter(table.get("scales") or [None]))  # the v3 tables have one width
    module = walker.build_module(walker.resolve(table, scale), Options())
    flat = {k: v.reshape(-1) for k, v in state_dict_arrays(module).items()}
    config = YoloModel("yolov5" if name.startswith("yolov5v7") else "yolo11")._config(
        WeightMap(flat, "w.wts"), argparse.Namespace(decode="layers"))
    classes = 1 if name.endswith("-depth") else 3  # a Depth head holds no class count: the table's nc (1) stays
    assert (config.table_name, config.scale, config.num_classes) == (name, scale, classes)


@pytest.mark.parametrize("name", ["yolo11", "yolov8"])
def test_every_official_scale_is_found_again_from_its_own_counts(name):
    """Each scale of a table from value counts alone (meta device: no memory). yolo11 m and l share their width and
    max_channels and differ only in depth (inner blocks per C3k2), so a match on widths alone would confuse them."""
    table = walker.official_table(name)
    for scale in table["scales"]:
        with torch.device("meta"):
            module = walker.build_module(walker.resolve(table, scale), Options())
        counts = {k: np.broadcast_to(np.float32(0), (v.numel(),)) for k, v in module.state_dict().items()}
        config = YoloModel(name)._config(WeightMap(counts, "w.wts"), argparse.Namespace(decode="layers"))
        assert (config.table_name, config.scale) == (name, scale)


def user_table() -> dict:
    """A user's YOLO11n: C3k inside the first C3k2, SPPF k=3, a C2f in the neck, a 5x5 stride-2 conv, 7 classes."""
    table = walker.official_table("yolo11")
    table.update(nc=7, scale="n")
    table["backbone"][2][3] = [256, True, 0.25]
    table["backbone"][9][3] = [1024, 3]
    table["head"][2] = [-1, 2, "C2f", [512]]
    table["head"][6] = [-1, 1, "Conv", [256, 5, 2]]
    return table


def _pickle(table, path, seed=0):
    module = randomize(walker.build_module(walker.resolve(table, table.get("scale")), Options()), seed).eval()
    save_upstream_checkpoint(module, path, "ultralytics.nn.tasks", "DetectionModel", yaml=table,
                             names={i: f"thing{i}" for i in range(table["nc"])})
    return module


def test_a_users_edited_table_in_a_pickled_checkpoint_builds_and_validates(tmp_path, capsys):
    path = tmp_path / "mine.pt"
    module = _pickle(user_table(), path)
    assert module.model[2].m[0].__class__.__name__ == "C3k" and module.model[13].__class__.__name__ == "C2f"
    assert module.model[9].m.kernel_size == 3 and module.model[17].conv.kernel_size == (5, 5)
    assert main(YoloModel("yolo11"), ["validate", "--weights", str(path), "--input-size", "64"]) == 0
    out = capsys.readouterr().out
    assert "layers pass (tolerance 0.0001)" in out and "model.13.m.0.cv2" in out and "model.17.conv" in out
    engine = tmp_path / "mine.engine"
    assert main(YoloModel("yolo11"), ["build", "--weights", str(path), "-o", str(engine), "--input-size", "64"]) == 0
    assert main(YoloModel("yolo11"), ["infer", "--engine", str(engine), "--source", "tests/data/images",
                                      "--conf", "0.01"]) == 0
    assert '"class_name": "thing' in capsys.readouterr().out


def _one_error_line(capsys) -> str:
    err = capsys.readouterr().err.strip().splitlines()
    errors = [line for line in err if "error:" in line]
    assert len(errors) == 1 and err[-1] == errors[0], err
    return errors[0]


def test_an_unknown_block_is_one_line_naming_the_row(tmp_path, capsys):
    table = walker.official_table("yolov8")
    table["nc"] = 2
    table["backbone"][4][2] = "C9000"
    with pytest.raises(TableError, match=r"^row 4 \(C9000\): unknown block 'C9000' \(known: .*C2f"):
        walker.resolve(table, "n")
    path = tmp_path / "table.yaml"
    import yaml
    path.write_text(yaml.safe_dump(table))
    weights = tmp_path / "w.pt"
    torch.save(YoloModel("yolov8").random_module(argparse.Namespace(num_classes=2), 0).state_dict(), weights)
    assert main(YoloModel("yolov8"), ["validate", "--weights", str(weights), "--model-yaml", str(path)]) == 2
    assert "row 4 (C9000): unknown block 'C9000'" in _one_error_line(capsys)


def test_a_shape_disagreement_names_the_row_and_the_key(tmp_path, capsys):
    state = YoloModel("yolov8").random_module(argparse.Namespace(), 0).state_dict()
    state["model.4.cv1.conv.weight"] = torch.zeros(32, 16, 1, 1)
    weights = tmp_path / "w.pt"
    torch.save(state, weights)
    assert main(YoloModel("yolov8"), ["validate", "--weights", str(weights)]) == 2
    line = _one_error_line(capsys)
    assert "closest table yolov8 at scale n: row 4 (C2f): model.4.cv1.conv.weight has shape [32, 16, 1, 1], the " \
           "table expects [64, 64, 1, 1]" in line
    table = user_table()
    path = tmp_path / "mine.pt"
    module = _pickle(table, path)
    table["head"][2] = [-1, 2, "C3k2", [512, False]]   # the yaml no longer describes the weights
    save_upstream_checkpoint(module, path, "ultralytics.nn.tasks", "DetectionModel", yaml=table)
    assert main(YoloModel("yolo11"), ["validate", "--weights", str(path)]) == 2
    assert "the checkpoint's own table: row 13 (C3k2)" in _one_error_line(capsys)


def test_table_rows_that_are_not_rows_are_refused():
    for rows, match in (([[-1, 1, "Conv"]], r"row 0: a row is \[from, repeats, block, args\]"),
                        ([[-1, 0, "Conv", [16]]], r"row 0 \(Conv\): repeats must be a positive integer"),
                        ([[5, 1, "Conv", [16]]], r"row 0 \(Conv\): from 5 names a row that does not come before it"),
                        ([[-1, 1, "Conv", ["sixteen"]]], r"row 0 \(Conv\): the first argument must be an output")):
        with pytest.raises(TableError, match=match):
            walker.resolve({"nc": 1, "backbone": rows, "head": []})


def test_pose_visibility_is_the_sigmoid_of_its_raw_channel():
    """A (K, 3) head: every third keypoint value is sigmoid(raw), written out here from the raw branch outputs (the
    block test holds the network to this module, so a raw visibility in either is caught)."""
    k, strides = 5, (8, 16)
    with using(Options(strides=strides)):
        head = lookup("Pose", "test").module(2, [k, 3], [16, 32], False, 16)
    randomize_batchnorm(head, torch.Generator().manual_seed(1))
    head.eval()
    xs = [torch.randn(1, 16, 8, 8), torch.randn(1, 32, 4, 4)]
    with torch.no_grad():
        out = head(xs)
        raw = torch.cat([branch(x).flatten(2) for branch, x in zip(head.cv4, xs)], 2)  # (1, K*3, anchors)
    visibility = out[:, -k * 3:][:, 2::3]
    # raw values that a missing sigmoid would leave visibly different (sigmoid has a fixed point near 0.659)
    assert (torch.sigmoid(raw[:, 2::3]) - raw[:, 2::3]).abs().max() > 0.1
    torch.testing.assert_close(visibility, torch.sigmoid(raw[:, 2::3]), rtol=0, atol=1e-6)


RACE = """
import threading
from zoo.yolo import registry
barrier, failures = threading.Barrier(8), []
def look_up():
    barrier.wait()
    try:
        registry.lookup("C3", "row 2 (C3)")
    except Exception as e:  # noqa: BLE001
        failures.append(repr(e))
threads = [threading.Thread(target=look_up) for _ in range(8)]
for t in threads:
    t.start()
for t in threads:
    t.join()
print(failures)
"""


def test_the_block_registry_fills_once_for_threads_asking_at_once():
    """serve's request threads look blocks up at once in a fresh worker: none may see the registry half filled
    (before the lock, 7 of these 8 threads got 'unknown block C3')."""
    import subprocess
    import sys
    from pathlib import Path
    root = Path(__file__).resolve().parent.parent
    result = subprocess.run([sys.executable, "-c", RACE], cwd=root, capture_output=True, text=True, timeout=120,
                            env={"PYTHONPATH": str(root), "PATH": "/usr/bin:/bin"})
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "[]", result.stdout
