"""The GPU paths' decisions, checked on a CPU: the PTX ISA cap, $ZOO_PTX_VERSION, and when TensorRT is usable."""
from __future__ import annotations

import sys
import types

import pytest

from plugins import ptx
from zoo.engine import gpu


@pytest.mark.parametrize("driver, limit", [(13000, 90), (13010, 91), (12080, 87), (12090, 88), (12060, 85),
                                           (12040, 84), (12000, 80), (11080, 78)])
def test_the_ptx_isa_is_capped_at_what_the_driver_accepts(driver, limit):
    assert ptx.driver_ptx_limit(driver) == limit
    if limit >= ptx.MIN_PTX:
        assert ptx.ptx_version({}, driver=driver) == limit
    else:
        with pytest.raises(ptx.PtxVersionError, match="update the NVIDIA driver"):
            ptx.ptx_version({}, driver=driver)


def test_without_a_driver_triton_keeps_its_default():
    assert ptx.ptx_version({}, driver=None) is None


@pytest.mark.parametrize("text, value", [("85", 85), ("8.5", 85), ("9.0", 90), (" 90 ", 90)])
def test_zoo_ptx_version_wins_over_the_driver(text, value):
    assert ptx.ptx_version({ptx.VARIABLE: text}, driver=13000) == value


@pytest.mark.parametrize("text", ["78", "7.8", "100", "abc", "8.5.1"])
def test_zoo_ptx_version_is_validated_in_one_line(text):
    with pytest.raises(ptx.PtxVersionError, match=ptx.VARIABLE):
        ptx.ptx_version({ptx.VARIABLE: text}, driver=13000)


# The compiled PTX's .version under the cap is checked in test_yolo_decode.py's AOT test (one compile, no GPU).


def test_tensorrt_is_not_usable_when_torch_has_no_cuda(monkeypatch):
    """A GPU and TensorRT, but the CPU build of PyTorch: the runner could not hand over its outputs."""
    from cuda.bindings import runtime as cudart
    monkeypatch.setitem(sys.modules, "tensorrt", types.ModuleType("tensorrt"))
    monkeypatch.setattr(cudart, "cudaGetDeviceCount", lambda: (cudart.cudaError_t.cudaSuccess, 1))
    import torch
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    available, reason = gpu.gpu_status.__wrapped__()
    assert not available and "PyTorch" in reason and "no CUDA" in reason
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    assert gpu.gpu_status.__wrapped__() == (True, "1 CUDA device(s)")


def test_gpu_check_on_a_cpu_machine_skips_every_check_with_its_reason_and_exits_0(capsys):
    import torch
    from tools import gpu_check
    if torch.cuda.is_available():
        pytest.skip("this machine has a GPU: run `make gpu-check` instead")
    assert gpu_check.main() == 0
    table = capsys.readouterr().out.splitlines()
    assert table[0].split() == ["check", "seconds", "result"]
    rows = table[1:]
    assert len(rows) == len(gpu_check.CHECKS)
    for (name, _), row in zip(gpu_check.CHECKS, rows):
        assert row.startswith(name) and "SKIP" in row, row
    assert "no CUDA device visible to PyTorch" in rows[0] and "TensorRT cannot run here" in rows[-1]


def test_gpu_check_reports_a_failing_check_and_exits_1(capsys):
    from tools import gpu_check

    def broken():
        raise AssertionError("kernel output differs")
    assert gpu_check.main([("ok", lambda: "fine"), ("broken", broken)]) == 1
    out = capsys.readouterr().out
    assert "PASS  fine" in out and "FAIL  AssertionError: kernel output differs" in out


def test_bench_compare_torch_times_pytorch_on_the_engines_device(monkeypatch, capsys):
    """A GPU engine must be compared with PyTorch on the GPU: the meta device stands in for CUDA here."""
    import argparse
    from zoo.engine.commands import bench
    from zoo.lenet.model import LeNetModel

    header = argparse.Namespace(config={"input_size": 32}, input_name="input", precision="fp32", backend="tensorrt",
                                variant="lenet5")
    runner = argparse.Namespace(device="meta", run=lambda feed: {})
    monkeypatch.setattr(bench, "engine_runner", lambda model, args: (header, runner))
    args = argparse.Namespace(source=None, batch=1, seed=0, warmup=0, iterations=1, compare_torch=True,
                              weights=None, engine=None)
    assert bench.run(LeNetModel(), args) == 0
    assert "PyTorch eager (meta)" in capsys.readouterr().out


@pytest.mark.parametrize("smi, extra", [("| NVIDIA-SMI 580.65   Driver Version: 580.65   CUDA Version: 13.0 |", "gpu-cu13"),
                                        ("| NVIDIA-SMI 550.54   Driver Version: 550.54   CUDA Version: 12.4 |", "gpu-cu12"),
                                        (None, None)])
def test_setup_installs_the_gpu_extra_of_the_drivers_cuda_version(tmp_path, smi, extra):
    """`make setup` as a dry run, with a stand-in nvidia-smi on PATH (or none)."""
    import os
    import shutil
    import subprocess
    if shutil.which("make") is None:
        pytest.skip("make is not installed")
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    if smi:
        (bin_dir / "nvidia-smi").write_text(f"#!/bin/sh\necho '{smi}'\n")
        (bin_dir / "nvidia-smi").chmod(0o755)
    path = os.pathsep.join([str(bin_dir)] + [p for p in os.environ["PATH"].split(os.pathsep)
                                            if not (p and os.path.exists(os.path.join(p, "nvidia-smi")))])
    proc = subprocess.run(["make", "-n", "setup", f"VENV={tmp_path / 'venv'}"], capture_output=True, text=True,
                          env={**os.environ, "PATH": path})
    assert proc.returncode == 0, proc.stderr
    lines = proc.stdout
    assert lines.index("torch==2.13.0") < lines.index('".[test]"')  # torch first, pinned
    if extra:
        assert f'".[{extra}]"' in lines and "import torch" in lines
    else:
        assert 'if [ -n "" ]' in lines


# ---------------------------------------------------------------------------------------------------------------
# the assembler caps the ISA too (issue 17): Triton runs a CUDA 12.9 ptxas below sm_90, a newer one from sm_90

def _ptxas_release(binary: str) -> tuple[int, int] | None:
    """The CUDA release of one of Triton's bundled assemblers, read from its own --version (independent of Triton's
    Python code)."""
    import re
    import subprocess
    triton = pytest.importorskip("triton")
    from pathlib import Path
    path = Path(triton.__file__).parent / "backends" / "nvidia" / "bin" / binary
    if not path.is_file():
        return None
    found = re.search(r"release (\d+)\.(\d+)", subprocess.run([str(path), "--version"], capture_output=True,
                                                              text=True).stdout)
    return (int(found.group(1)), int(found.group(2))) if found else None


@pytest.mark.parametrize("cc, binary", [(80, "ptxas"), (86, "ptxas"), (89, "ptxas"), (90, "ptxas-blackwell"),
                                        (100, "ptxas-blackwell")])
def test_the_assembler_limit_is_that_of_the_ptxas_triton_runs_for_the_gpu(cc, binary):
    release = _ptxas_release(binary)
    if release is None:
        pytest.skip(f"triton has no bundled {binary}")
    major, minor = release
    assert ptx.assembler_ptx_limit(cc) == ptx.driver_ptx_limit(major * 1000 + minor * 10)


@pytest.mark.parametrize("cc, assembler, driver, want", [(80, 88, 13000, 88), (89, 88, 13010, 88), (90, 94, 13000, 90),
                                                         (90, 94, 13040, 94), (80, 88, 12040, 84), (80, 88, None, 88)])
def test_the_isa_is_the_lower_of_driver_and_assembler(cc, assembler, driver, want):
    assert ptx.ptx_version({}, driver=driver, cc=cc, assembler=assembler) == want


def test_zoo_ptx_version_above_the_assembler_is_refused_in_one_line():
    with pytest.raises(ptx.PtxVersionError, match=r"ZOO_PTX_VERSION=9\.0 is newer than the PTX ISA 8\.8 .* sm_80"):
        ptx.ptx_version({ptx.VARIABLE: "90"}, driver=13000, cc=80, assembler=88)
    assert ptx.ptx_version({ptx.VARIABLE: "85"}, driver=13000, cc=80, assembler=88) == 85


def test_sm80_and_sm89_plans_compile_with_a_580_driver(run_fresh):
    """What failed inside the plugin callback ("Unsupported .version 9.0"): the decode kernel for sm_80 and sm_89
    with a CUDA 13.0 driver's cap, assembled by Triton's own ptxas (triton.compile runs it)."""
    pytest.importorskip("triton", reason="triton is not installed")
    proc = run_fresh("""
        import numpy as np
        from plugins.ptx import ptx_version
        from plugins.yolo_decode.kernel import compile_decode_ptx
        for cc in (80, 89):
            k = compile_decode_ptx(in_dtype="fp32", stride=8, anchors=np.array([10, 13, 16, 30, 33, 23], np.float32),
                                   num_outputs=85, cc=cc, ptx_version=ptx_version({}, driver=13000, cc=cc))
            print(cc, [line for line in k.ptx.splitlines() if line.startswith(".version")])
    """)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert proc.stdout.split("\n")[:2] == ["80 ['.version 8.8']", "89 ['.version 8.8']"], proc.stdout
