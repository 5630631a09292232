"""tools/gen_wts.py end to end: checkpoint in, .wts out, equal to the state_dict; one-line errors with exit 2."""
from __future__ import annotations

import os
import subprocess
import sys

import numpy as np
import pytest

torch = pytest.importorskip("torch")

import wts  # noqa: E402
from tools import gen_wts  # noqa: E402

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def small_net():
    torch.manual_seed(0)
    net = torch.nn.Sequential(torch.nn.Conv2d(3, 8, 3), torch.nn.BatchNorm2d(8), torch.nn.SiLU(),
                              torch.nn.Flatten(), torch.nn.Linear(8, 4))
    with torch.no_grad():
        net[1].running_mean.uniform_(-1, 1)
        net[1].running_var.uniform_(0.5, 2)
        net[1].num_batches_tracked.fill_(42)
    return net


def assert_wts_equals_state_dict(path, state_dict):
    got = wts.load(path)
    assert list(got) == list(state_dict)
    assert "1.num_batches_tracked" in got and got["1.num_batches_tracked"].tolist() == [42.0]
    for k, v in state_dict.items():
        ref = v.detach().float().numpy().reshape(-1)
        assert np.array_equal(got[k].view(np.uint32), ref.view(np.uint32)), k


def test_converts_a_checkpoint_and_prints_a_summary(tmp_path, capsys):
    net = small_net()
    torch.save({"model": net.half(), "ema": None, "epoch": -1}, tmp_path / "net.pt")
    rc = gen_wts.main(["-w", str(tmp_path / "net.pt"), "-o", str(tmp_path / "out.wts")])
    out, err = capsys.readouterr()
    assert rc == 0, err
    assert_wts_equals_state_dict(tmp_path / "out.wts", net.state_dict())
    size = (tmp_path / "out.wts").stat().st_size
    n_values = sum(v.numel() for v in net.state_dict().values())
    assert f"{len(net.state_dict())} entries, {n_values} values, {size} bytes" in out
    assert "pickled module torch.nn.modules.container.Sequential" in err
    assert sorted(os.listdir(tmp_path)) == ["net.pt", "out.wts"]  # no temporary file left


def test_default_output_name_style_and_quiet(tmp_path, capsys):
    net = small_net()
    torch.save(net.state_dict(), tmp_path / "sd.pth")
    assert gen_wts.main(["-w", str(tmp_path / "sd.pth"), "--style", "compact", "-q"]) == 0
    out, err = capsys.readouterr()
    assert out == "" and err == ""
    assert_wts_equals_state_dict(tmp_path / "sd.wts", net.state_dict())
    assert b"  " not in (tmp_path / "sd.wts").read_bytes()


def test_progress_for_big_checkpoints(tmp_path, capsys, monkeypatch):
    monkeypatch.setattr(gen_wts, "PROGRESS_MIN_VALUES", 1)
    torch.save(small_net().state_dict(), tmp_path / "sd.pt")
    assert gen_wts.main(["-w", str(tmp_path / "sd.pt")]) == 0
    err = capsys.readouterr().err
    assert "gen_wts: writing" in err and err.count("100%") == 1


def one_line_error(capsys, argv, fragment):
    rc = gen_wts.main(argv)
    out, err = capsys.readouterr()
    assert rc == 2
    assert out == ""
    lines = err.splitlines()
    assert len(lines) == 1 and lines[0].startswith("gen_wts: error: ") and fragment in lines[0], err
    return lines[0]


def test_user_errors_are_one_line_with_exit_2(tmp_path, capsys):
    missing = str(tmp_path / "missing.pt")
    one_line_error(capsys, ["-w", missing], f"{missing}: no such file")
    one_line_error(capsys, [], "the following arguments are required: -w/--weights")
    one_line_error(capsys, ["-w", missing, "--style", "fancy"], "invalid choice")
    (tmp_path / "bad.wts").write_text("1\nw 2 3f800000\n")
    one_line_error(capsys, ["-w", str(tmp_path / "bad.wts"), "-o", str(tmp_path / "o.wts")],
                   "bad.wts:2: key 'w': value count 2 does not match the 1 values")
    (tmp_path / "same.wts").write_text("1\nw 1 3f800000\n")
    one_line_error(capsys, ["-w", str(tmp_path / "same.wts")], "is the input file")
    (tmp_path / "garbage.pt").write_bytes(b"\x80\x02garbage" * 20)
    one_line_error(capsys, ["-w", str(tmp_path / "garbage.pt")], "not a readable PyTorch checkpoint")
    torch.save(small_net().state_dict(), tmp_path / "ok.pt")
    one_line_error(capsys, ["-w", str(tmp_path / "ok.pt"), "-o", str(tmp_path / "nodir" / "x.wts")],
                   "nodir does not exist")
    one_line_error(capsys, ["-w", str(tmp_path / "ok.pt"), "-o", str(tmp_path)], "is a directory")


def test_malicious_checkpoint_is_a_user_error(tmp_path, capsys):
    class Payload:
        def __reduce__(self):
            return os.system, (f"touch {tmp_path / 'pwned'}",)

    torch.save({"model": Payload()}, tmp_path / "evil.pt")
    one_line_error(capsys, ["-w", str(tmp_path / "evil.pt")], "refusing to load the global 'posix.system'")
    assert not (tmp_path / "pwned").exists()


def test_verbose_prints_the_traceback(tmp_path, capsys):
    rc = gen_wts.main(["-w", str(tmp_path / "missing.pt"), "--verbose"])
    err = capsys.readouterr().err
    assert rc == 2 and "Traceback" in err and err.rstrip().endswith("no such file")


def test_real_command_help_and_conversion(tmp_path):
    script = os.path.join(ROOT, "tools", "gen_wts.py")
    helped = subprocess.run([sys.executable, script, "--help"], capture_output=True, text=True, cwd=tmp_path)
    assert helped.returncode == 0 and "--weights" in helped.stdout and "--output" in helped.stdout
    net = small_net()
    torch.save({"model": net, "ema": None}, tmp_path / "net.pt")
    run = subprocess.run([sys.executable, script, "-w", "net.pt", "-o", "net.wts"], capture_output=True,
                         text=True, cwd=tmp_path)
    assert run.returncode == 0, run.stderr
    assert_wts_equals_state_dict(tmp_path / "net.wts", net.state_dict())
    bad = subprocess.run([sys.executable, script, "-w", "nope.pt"], capture_output=True, text=True, cwd=tmp_path)
    assert bad.returncode == 2 and bad.stderr == "gen_wts: error: nope.pt: no such file\n"
