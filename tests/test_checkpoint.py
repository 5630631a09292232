"""Checkpoint loading: every accepted kind, classes that cannot be imported, and refusal of code in pickles."""
from __future__ import annotations

import contextlib
import importlib
import os
import pickle
import sys
import textwrap

import numpy as np
import pytest

torch = pytest.importorskip("torch")

import wts  # noqa: E402
from zoo.engine.checkpoint import Checkpoint, CheckpointError, load_state_dict  # noqa: E402

MODULE_SOURCE = '''
import torch
import torch.nn as nn


class Conv(nn.Module):
    def __init__(self, c1, c2, k=1):
        super().__init__()
        self.conv = nn.Conv2d(c1, c2, k, padding=k // 2, bias=False)
        self.bn = nn.BatchNorm2d(c2, eps=1e-3)
        self.act = nn.SiLU()


class Detect(nn.Module):
    def __init__(self, nc, ch):
        super().__init__()
        self.register_buffer("anchors", torch.rand(len(ch), 3, 2) * 10)
        self.register_buffer("scratch", torch.ones(3), persistent=False)  # not in the state_dict
        self.m = nn.ModuleList(nn.Conv2d(c, 3 * (nc + 5), 1) for c in ch)
        self.stride = torch.tensor([8.0, 16.0])                          # plain attribute, not a buffer
        self.grid = [torch.empty(0) for _ in ch]


class DetectionModel(nn.Module):
    def __init__(self, nc=3):
        super().__init__()
        self.scale = nn.Parameter(torch.randn(2))                        # own parameter before children
        self.register_buffer("version", torch.tensor(7))                 # own int buffer
        self.unused = None
        self.register_parameter("absent", None)                          # None parameter: skipped
        self.model = nn.Sequential(Conv(3, 8, 3), Conv(8, 16), Detect(nc, (8, 16)))
        self.names = [f"class{i}" for i in range(nc)]
        with torch.no_grad():
            for mod in self.modules():
                if isinstance(mod, nn.BatchNorm2d):
                    mod.running_mean.uniform_(-1, 1)
                    mod.running_var.uniform_(0.5, 2)
                    mod.num_batches_tracked.fill_(123)
'''


@contextlib.contextmanager
def temporary_module(tmp_path, dotted: str, source: str):
    """Make ``dotted`` importable from tmp_path while the block runs, and un-importable afterwards."""
    root = tmp_path / "src"
    parts = dotted.split(".")
    folder = root.joinpath(*parts[:-1])
    folder.mkdir(parents=True, exist_ok=True)
    for i in range(1, len(parts)):
        (root.joinpath(*parts[:i]) / "__init__.py").touch()
    (folder / f"{parts[-1]}.py").write_text(textwrap.dedent(source))
    names = [".".join(parts[:i]) for i in range(1, len(parts) + 1)]
    assert not any(n in sys.modules for n in names), f"{dotted} is already imported"
    sys.path.insert(0, str(root))
    importlib.invalidate_caches()
    try:
        yield importlib.import_module(dotted)
    finally:
        sys.path.remove(str(root))
        for n in names:
            sys.modules.pop(n, None)
        importlib.invalidate_caches()
    with pytest.raises(ImportError):
        importlib.import_module(dotted)


def expected(module) -> dict[str, np.ndarray]:
    return {k: v.detach().float().numpy() for k, v in module.state_dict().items()}


def assert_same(ckpt: Checkpoint, ref: dict[str, np.ndarray]):
    assert list(ckpt.tensors) == list(ref)
    for k, v in ref.items():
        got = ckpt.tensors[k]
        assert got.dtype == np.float32 and got.shape == v.shape, k
        assert np.array_equal(got.view(np.uint32), v.astype(np.float32).view(np.uint32)), k


def test_pickled_module_of_a_class_that_cannot_be_imported(tmp_path):
    path = tmp_path / "net.pt"
    with temporary_module(tmp_path, "ckpt_test_private_net", MODULE_SOURCE) as mod:
        net = mod.DetectionModel()
        torch.save(net, path)
        ref = expected(net)
    assert "model.2.anchors" in ref and "model.0.bn.num_batches_tracked" in ref and "model.2.scratch" not in ref
    ckpt = load_state_dict(path)
    assert_same(ckpt, ref)
    assert list(ckpt.tensors)[:2] == ["scale", "version"]
    assert ckpt.names == ["class0", "class1", "class2"]
    assert "ckpt_test_private_net.DetectionModel" in ckpt.source and "restricted" in ckpt.source


def test_ultralytics_style_checkpoint_dict_fp16(tmp_path):
    path = tmp_path / "yolov5s.pt"
    with temporary_module(tmp_path, "models.yolo", MODULE_SOURCE) as yolo:
        net = yolo.DetectionModel(nc=2)
        assert type(net).__module__ == "models.yolo"
        net.names = ["person", "bicycle"]
        half = net.half()
        torch.save({"model": half, "ema": None, "optimizer": None, "epoch": -1, "date": "2022-11-22"}, path)
        ref = expected(half)
    ckpt = load_state_dict(path)
    assert_same(ckpt, ref)
    assert all(v.dtype == np.float32 for v in ckpt.tensors.values())
    assert ckpt.names == ["person", "bicycle"]
    assert "'model' entry" in ckpt.source and "models.yolo.DetectionModel" in ckpt.source


def test_metadata_with_harmless_classes_does_not_block_loading(tmp_path):
    import argparse
    import functools
    import pathlib
    import types
    net = torch.nn.Linear(3, 2)
    torch.save({"model": net, "ema": None, "opt": argparse.Namespace(save_dir=pathlib.Path("/runs/exp")),
                "ns": types.SimpleNamespace(a=1), "act": functools.partial(torch.nn.ReLU, inplace=True)},
               tmp_path / "meta.pt")
    assert_same(load_state_dict(tmp_path / "meta.pt"), expected(net))


def test_ema_is_preferred_when_present(tmp_path):
    path = tmp_path / "last.pt"
    with temporary_module(tmp_path, "ckpt_test_ema_net", MODULE_SOURCE) as mod:
        model, ema = mod.DetectionModel(), mod.DetectionModel()
        ema.names = {0: "a", 1: "b", 2: "c"}
        torch.save({"model": model, "ema": ema, "epoch": 3}, path)
        ref = expected(ema)
    ckpt = load_state_dict(path)
    assert_same(ckpt, ref)
    assert ckpt.names == {0: "a", 1: "b", 2: "c"}
    assert "'ema' entry" in ckpt.source


def test_plain_state_dict_and_state_dict_entry(tmp_path):
    net = torch.nn.Sequential(torch.nn.Conv2d(3, 4, 3), torch.nn.BatchNorm2d(4), torch.nn.Linear(2, 5)).half()
    ref = expected(net)
    torch.save(net.state_dict(), tmp_path / "sd.pt")
    ckpt = load_state_dict(tmp_path / "sd.pt")
    assert_same(ckpt, ref)
    assert ckpt.names is None and ckpt.source.startswith("state_dict") and "weights_only=True" in ckpt.source
    torch.save({"state_dict": net.state_dict(), "names": ["x"], "epoch": 1}, tmp_path / "entry.pt")
    ckpt = load_state_dict(tmp_path / "entry.pt")
    assert_same(ckpt, ref)
    assert ckpt.names == ["x"]


@pytest.mark.filterwarnings("ignore:`torch.jit.script` is deprecated:DeprecationWarning")
def test_torchscript_archive(tmp_path):
    net = torch.nn.Sequential(torch.nn.Conv2d(3, 4, 3), torch.nn.BatchNorm2d(4), torch.nn.ReLU())
    torch.jit.script(net).save(str(tmp_path / "net.torchscript"))
    ckpt = load_state_dict(tmp_path / "net.torchscript")
    assert_same(ckpt, expected(net))
    assert "TorchScript" in ckpt.source


def test_wts_file(tmp_path):
    net = torch.nn.Linear(3, 2)
    wts.save(tmp_path / "lin.wts", net.state_dict())
    ckpt = load_state_dict(tmp_path / "lin.wts")
    assert ckpt.source == "wts" and list(ckpt.tensors) == ["weight", "bias"]
    assert ckpt.tensors["weight"].shape == (6,)  # .wts is flat
    assert np.array_equal(ckpt.tensors["weight"], net.weight.detach().numpy().reshape(-1))


# ------------------------------------------------------------------------------------------------- refusal


class _Payload:
    """Unpickling this runs ``func(*args)``: the classic pickle exploit."""

    def __init__(self, func, *args):
        self.func, self.args = func, args

    def __reduce__(self):
        return self.func, self.args


def _payloads(marker):
    command = f"touch {marker}"
    import subprocess
    return {
        "os.system": _Payload(os.system, command),
        "builtins.eval": _Payload(eval, f"__import__('os').system({command!r})"),
        "subprocess.call": _Payload(subprocess.call, ["touch", str(marker)]),
        "builtins.exec": _Payload(exec, f"open({str(marker)!r}, 'w').close()"),
    }


@pytest.mark.parametrize("kind", ["os.system", "builtins.eval", "subprocess.call", "builtins.exec"])
@pytest.mark.parametrize("container", ["torch.save", "raw pickle", "inside a module"])
def test_malicious_pickle_is_refused_and_not_run(tmp_path, kind, container):
    marker = tmp_path / "pwned"
    payload = _payloads(marker)[kind]
    path = tmp_path / "evil.pt"
    if container == "torch.save":
        torch.save({"model": payload, "ema": None}, path)
    elif container == "raw pickle":
        path.write_bytes(pickle.dumps(payload, protocol=2))
    else:
        net = torch.nn.Linear(2, 2)
        net.extra = payload  # travels in the module's __dict__
        torch.save({"model": net}, path)
    with pytest.raises(CheckpointError) as info:
        load_state_dict(path)
    msg = str(info.value)
    func = payload.func
    global_path = f"{func.__module__}.{func.__name__}"  # os.system pickles as posix.system
    assert str(path) in msg and "refusing" in msg and global_path in msg
    assert not marker.exists(), "the payload ran"


# -------------------------------------------------------------------------------------------------- errors


def test_unreadable_and_empty_files(tmp_path):
    with pytest.raises(CheckpointError, match=f"{tmp_path / 'missing.pt'}: no such file"):
        load_state_dict(tmp_path / "missing.pt")
    with pytest.raises(CheckpointError, match="is a directory"):
        load_state_dict(tmp_path)
    (tmp_path / "empty.pt").write_bytes(b"")
    with pytest.raises(CheckpointError, match=f"{tmp_path / 'empty.pt'}: empty file"):
        load_state_dict(tmp_path / "empty.pt")
    (tmp_path / "garbage.pt").write_bytes(b"this is not a checkpoint at all")
    with pytest.raises(CheckpointError, match=f"{tmp_path / 'garbage.pt'}: not a readable PyTorch checkpoint"):
        load_state_dict(tmp_path / "garbage.pt")


def test_checkpoints_without_tensors(tmp_path):
    torch.save({"epoch": 3, "model": None, "ema": None}, tmp_path / "none.pt")
    with pytest.raises(CheckpointError, match=f"{tmp_path / 'none.pt'}: a checkpoint dict without tensors"):
        load_state_dict(tmp_path / "none.pt")
    torch.save([1, 2, 3], tmp_path / "list.pt")
    with pytest.raises(CheckpointError, match="holds a list, not a module or a state_dict"):
        load_state_dict(tmp_path / "list.pt")
    torch.save(torch.nn.ReLU(), tmp_path / "relu.pt")
    with pytest.raises(CheckpointError, match=f"{tmp_path / 'relu.pt'}: holds no tensors"):
        load_state_dict(tmp_path / "relu.pt")


def test_bad_wts_is_a_wts_error(tmp_path):
    (tmp_path / "bad.wts").write_text("2\nw 1 3f800000\n")
    with pytest.raises(wts.WtsError, match="bad.wts:2: line 1 announces 2 entries"):
        load_state_dict(tmp_path / "bad.wts")
