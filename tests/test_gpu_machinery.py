"""The GPU test machinery, tested on the CPU by faking the GPU's presence (conftest's ZOO_TEST_FAKE_GPU): each GPU
test of the interpreted suite runs once, in one fresh process without TRITON_INTERPRET, and its skip there (the test
body's own reason: no CUDA here) is its skip here. Before issue 17 the kernel test modules set TRITON_INTERPRET at
import, so the fresh process saw it again and started another, without end."""
from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
GPU_TESTS = ["tests/test_letterbox_kernel.py::test_kernel_on_cuda_matches_cpu_letterbox",
             "tests/test_yolo_decode.py::test_kernel_on_cuda_equals_reference"]


def run_pytest(*args, timeout=240) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if k != "ZOO_TEST_NO_INTERPRETER"}
    env.update(ZOO_TEST_FAKE_GPU="1", TRITON_INTERPRET="1", PYTHONPATH=str(ROOT))
    proc = subprocess.Popen([sys.executable, "-m", "pytest", "-q", "-rs", "-p", "no:cacheprovider", *args],
                            cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                            start_new_session=True)
    try:
        out, _ = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)  # the whole chain of processes, orphans included
        out, _ = proc.communicate()
        raise AssertionError(f"no result in {timeout} s (processes starting processes?):\n{out[-2000:]}") from None
    return subprocess.CompletedProcess(proc.args, proc.returncode, out, "")


def test_gpu_tests_run_once_in_a_fresh_process_and_report_its_skip():
    proc = run_pytest(*GPU_TESTS)
    assert proc.returncode == 0, proc.stdout[-3000:]
    assert "2 skipped" in proc.stdout, proc.stdout[-3000:]
    # the reason comes from the test bodies, which ran in the fresh process (conftest itself was told "GPU present")
    assert proc.stdout.count("in a fresh process: ") == 2, proc.stdout[-3000:]
    assert "no CUDA device visible to PyTorch" in proc.stdout

