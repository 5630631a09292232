"""Hostile and careless files: no checkpoint runs code, no file makes the process allocate without bound, no
command writes over one of its inputs, and a killed write leaves temporaries that the next write removes."""
from __future__ import annotations

import importlib
import os
import shutil
import sys
import tracemalloc
import zipfile

import numpy as np
import pytest
import torch

import wts
from tools import gen_wts
from zoo.engine.checkpoint import CheckpointError, load_state_dict
from zoo.engine.cli import main
from zoo.engine.engine_file import EngineHeader, read_engine, write_engine
from zoo.engine.files import stale_temporaries, temporary_name
from zoo.mlp.model import MLPModel
from zoo.yolo.model import YoloModel

IMAGES = "tests/data/images"

# A TorchScript module whose __setstate__ creates a file (torch.from_file with shared=True creates it): what
# torch.jit.load runs when it reads the archive.
EVIL_SOURCE = '''
import torch


class Evil(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.w = torch.nn.Parameter(torch.ones(2))

    def forward(self, x):
        return x * self.w

    @torch.jit.export
    def __getstate__(self):
        return (self.w, self.training)

    @torch.jit.export
    def __setstate__(self, state: tuple[torch.Tensor, bool]):
        self.w = state[0] + torch.from_file(MARKER, shared=True, size=2).sum() * 0.0
        self.training = state[1]
'''


def run(model, *argv):
    return main(model, [str(a) for a in argv])


@pytest.fixture
def evil_archive(tmp_path, monkeypatch):
    marker = tmp_path / "MARKER"
    (tmp_path / "evil_module.py").write_text(EVIL_SOURCE.replace("MARKER, ", f"{str(marker)!r}, "))
    monkeypatch.syspath_prepend(str(tmp_path))
    module = importlib.import_module("evil_module")
    try:
        with pytest.warns(DeprecationWarning):
            torch.jit.script(module.Evil()).save(str(tmp_path / "evil.pt"))
    finally:
        sys.modules.pop("evil_module", None)
    assert not marker.exists()
    return tmp_path / "evil.pt", marker


def test_a_torchscript_archive_never_runs_its_setstate(evil_archive, tmp_path, capsys):
    archive, marker = evil_archive
    with pytest.raises(CheckpointError, match="__setstate__"):
        load_state_dict(archive)
    assert gen_wts.main(["-w", str(archive), "-o", str(tmp_path / "out.wts")]) == 2
    assert run(MLPModel(), "build", "--weights", archive, "-o", tmp_path / "x.engine") == 2
    assert not marker.exists()
    assert not (tmp_path / "out.wts").exists()


def test_a_torchscript_archive_is_read_as_data_in_state_dict_order(tmp_path):
    net = torch.nn.Sequential(torch.nn.Conv2d(3, 4, 3), torch.nn.BatchNorm2d(4), torch.nn.Linear(2, 3))
    net[1].running_mean.uniform_(-1, 1)
    with pytest.warns(DeprecationWarning):
        torch.jit.script(net).save(str(tmp_path / "net.pt"))
    ckpt = load_state_dict(tmp_path / "net.pt")
    assert "read as data" in ckpt.source
    assert list(ckpt.tensors) == list(net.state_dict())
    for key, value in net.state_dict().items():
        np.testing.assert_array_equal(ckpt.tensors[key], value.float().numpy())


def _deflated_copy(src, dst):
    """The same zip entries, deflate-compressed: what a 1 MB file that expands to gigabytes looks like."""
    with zipfile.ZipFile(src) as zin, zipfile.ZipFile(dst, "w", zipfile.ZIP_DEFLATED) as zout:
        for info in zin.infolist():
            zout.writestr(info.filename, zin.read(info.filename))


def test_a_compressed_checkpoint_that_would_expand_is_refused_before_it_is_read(tmp_path, capsys):
    torch.save({"w": torch.zeros(1 << 21)}, tmp_path / "plain.pt")  # 8 MB of zeros
    _deflated_copy(tmp_path / "plain.pt", tmp_path / "bomb.pt")
    assert os.path.getsize(tmp_path / "bomb.pt") < 100_000
    with pytest.raises(CheckpointError, match="bomb.pt: .* declare .*x the file"):
        load_state_dict(tmp_path / "bomb.pt")
    assert gen_wts.main(["-w", str(tmp_path / "bomb.pt"), "-o", str(tmp_path / "b.wts")]) == 2
    assert not (tmp_path / "b.wts").exists()
    assert len(capsys.readouterr().err.strip().splitlines()) == 1  # one line, naming the file


def test_a_legacy_checkpoint_that_declares_a_huge_storage_is_refused_before_allocating(tmp_path):
    """torch's legacy (non-zip) format allocates each storage at the size its pickle declares."""
    torch.save({"w": torch.arange(300.0)}, tmp_path / "legacy.pt", _use_new_zipfile_serialization=False)
    assert load_state_dict(tmp_path / "legacy.pt").tensors["w"].tolist() == list(range(300))
    data = (tmp_path / "legacy.pt").read_bytes()
    numel = b"M" + (300).to_bytes(2, "little")  # BININT2 300: the storage's declared element count comes first
    (tmp_path / "bomb.pt").write_bytes(data.replace(numel, b"J" + (1 << 30).to_bytes(4, "little"), 1))
    with pytest.raises(CheckpointError, match="bomb.pt: .*storages declare more bytes than the file can hold"):
        load_state_dict(tmp_path / "bomb.pt")


def test_the_weights_size_limit_is_configurable_and_named(tmp_path, monkeypatch):
    torch.save({"w": torch.ones(1000)}, tmp_path / "w.pt")
    wts.save(tmp_path / "w.wts", {"a": np.ones(200), "b": np.ones(200)})
    monkeypatch.setenv(wts.LIMIT_VARIABLE, "1000")
    with pytest.raises(CheckpointError, match=f"w.pt: .*over the limit .*{wts.LIMIT_VARIABLE}"):
        load_state_dict(tmp_path / "w.pt")
    with pytest.raises(wts.WtsError, match=f"w.wts:3: key 'b': .*over the limit .*{wts.LIMIT_VARIABLE}"):
        wts.load(tmp_path / "w.wts")
    monkeypatch.setenv(wts.LIMIT_VARIABLE, "1e9")
    assert load_state_dict(tmp_path / "w.pt").tensors["w"].size == 1000


def test_a_pickle_that_asks_for_a_huge_allocation_is_refused(tmp_path):
    class Huge:
        def __reduce__(self):
            return bytearray, (10 ** 12,)

    class Unknown:  # makes weights_only=True refuse, so the restricted unpickler runs
        pass
    Unknown.__module__, Unknown.__qualname__ = "somewhere.models", "Unknown"
    sys.modules.setdefault("somewhere", type(sys)("somewhere"))
    sys.modules["somewhere.models"] = type(sys)("somewhere.models")
    sys.modules["somewhere.models"].Unknown = Unknown
    try:
        torch.save({"model": Unknown(), "blob": Huge()}, tmp_path / "huge.pt")
    finally:
        del sys.modules["somewhere.models"], sys.modules["somewhere"]
    with pytest.raises(CheckpointError, match="bytearray.* over the limit"):
        load_state_dict(tmp_path / "huge.pt")


def test_a_wts_line_of_many_tokens_is_parsed_in_bounded_memory(tmp_path):
    """Tab-separated tokens take the slow path; it must not hold one Python object per token (old: 16x the file)."""
    n = 200_000
    hexes = np.arange(n, dtype=">f4").tobytes().hex()
    path = tmp_path / "tabs.wts"
    path.write_text(f"1\nkey {n}\t" + "\t".join(hexes[i:i + 8] for i in range(0, 8 * n, 8)) + "\n")
    tracemalloc.start()
    try:
        values = wts.load(path)["key"]
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    np.testing.assert_array_equal(values, np.arange(n, dtype=np.float32))
    assert peak < 6 * path.stat().st_size


def test_a_wts_token_count_lie_is_found_without_splitting_the_line(tmp_path):
    path = tmp_path / "lie.wts"
    path.write_text("1\nkey 3\t" + "\t".join(["3f800000"] * 5) + "\n")
    with pytest.raises(wts.WtsError, match="value count 3 does not match the 5 values"):
        wts.load(path)


def test_a_huge_key_is_cut_in_the_message(tmp_path):
    path = tmp_path / "key.wts"
    path.write_text("1\n" + "k" * 1_000_000 + " 2 3f800000\n")
    with pytest.raises(wts.WtsError) as error:
        wts.load(path)
    assert len(str(error.value)) < 300 and "1000000 characters" in str(error.value)


def test_nan_weights_in_a_pt_are_refused_like_in_a_wts(tmp_path):
    module = MLPModel().random_module(None, seed=0)
    state = module.state_dict()
    key = next(iter(state))
    state[key] = state[key].clone()
    state[key].view(-1)[0] = float("nan")
    torch.save(state, tmp_path / "nan.pt")
    with pytest.raises(CheckpointError, match=f"nan.pt: key '{key}': value at index 0 is nan"):
        load_state_dict(tmp_path / "nan.pt")
    assert run(MLPModel(), "build", "--weights", tmp_path / "nan.pt", "-o", tmp_path / "nan.engine") == 2


# ------------------------------------------------------------------------------------------------ no input lost


def test_build_refuses_an_output_that_is_the_weights_even_through_a_link(tmp_path):
    weights = tmp_path / "mlp.wts"
    wts.save(weights, {k: v.numpy() for k, v in MLPModel().random_module(None, seed=0).state_dict().items()})
    before = weights.read_bytes()
    (tmp_path / "link.engine").symlink_to(weights)
    assert run(MLPModel(), "build", "--weights", weights, "-o", weights) == 2
    assert run(MLPModel(), "build", "--weights", weights, "-o", tmp_path / "link.engine") == 2
    assert run(MLPModel(), "calibrate", "--weights", weights, "--images", IMAGES, "-o", weights) == 2
    assert weights.read_bytes() == before
    assert gen_wts.main(["-w", str(weights), "-o", str(tmp_path / "link.engine")]) == 2
    assert weights.read_bytes() == before


def test_infer_never_writes_annotated_images_over_its_inputs(tmp_path, capsys):
    images = tmp_path / "images"
    shutil.copytree(IMAGES, images)
    before = {p.name: p.read_bytes() for p in images.iterdir()}
    assert run(YoloModel("yolov5"), "infer", "--source", images, "--out", images, "--input-size", 64) == 2
    assert "refusing to write over an input" in capsys.readouterr().err
    assert run(YoloModel("yolov5"), "infer", "--source", images / "tiny.jpg", "--out", images, "--input-size", 64) == 2
    assert "would replace the input image" in capsys.readouterr().err
    assert {p.name: p.read_bytes() for p in images.iterdir()} == before
    # --no-draw writes only predictions.jsonl: allowed beside the images
    assert run(YoloModel("yolov5"), "infer", "--source", images / "tiny.jpg", "--out", images, "--input-size", 64,
               "--no-draw") == 0
    assert {p.name: p.read_bytes() for p in images.iterdir() if p.suffix != ".jsonl"} == before


def test_a_killed_writes_temporaries_are_removed_by_the_next_write_of_the_same_output(tmp_path):
    engine = tmp_path / "m.engine"
    leftover = temporary_name(engine)
    other = temporary_name(tmp_path / "other.engine")
    leftover.write_bytes(b"half")
    other.write_bytes(b"half")
    assert stale_temporaries(engine) == [leftover]
    assert run(MLPModel(), "build", "-o", engine) == 0
    assert not leftover.exists() and other.exists() and engine.exists()
    # the .wts writer (a standalone package) uses the same pattern
    stale = temporary_name(tmp_path / "w.wts")
    stale.write_bytes(b"half")
    wts.save(tmp_path / "w.wts", {"a": np.ones(2)})
    assert not stale.exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(["m.engine", "w.wts", other.name])


def test_a_failed_engine_write_keeps_the_previous_file_whole(tmp_path):
    """A direct write would have truncated the old engine before failing."""
    header = EngineHeader("mlp", "mlp", "reference", "input", [-1, 1], [1, 1, 1], "fp32", ["out"])
    path = tmp_path / "a.engine"
    write_engine(path, header, b"payload one")
    with pytest.raises(TypeError):
        write_engine(path, header, None)  # fails after the header is written
    assert read_engine(path)[1] == b"payload one"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.engine"]


