"""Shared test setup: GPU markers skip cleanly, with the reason, where their hardware or software is missing.

- `cuda`: needs a CUDA device visible to PyTorch (and Triton); no TensorRT. The lent GPU machine runs these.
- `tensorrt`: needs TensorRT and a GPU.

Kernel tests run on the CPU under Triton's interpreter (TRITON_INTERPRET=1, set here before anything imports
triton). GPU tests must not: Triton compiles for the device and TensorRT's AOT plugin compiles PTX. So on a machine
where they run, each `cuda` / `tensorrt` test runs in a fresh pytest process without TRITON_INTERPRET.
"""
import os
import signal
import subprocess
import sys

FRESH = "ZOO_TEST_NO_INTERPRETER"  # set in the fresh process that runs one GPU test
# Only for testing this machinery on a CPU (tests/test_gpu_machinery.py): GPU-marked tests are treated as runnable,
# so the fresh-process path runs; their own bodies then skip with the real reason.
FAKE_GPU = "ZOO_TEST_FAKE_GPU"
FRESH_TIMEOUT_S = 900
if not os.environ.get(FRESH):
    os.environ.setdefault("TRITON_INTERPRET", "1")  # Triton kernels run on the CPU interpreter in tests

import pytest  # noqa: E402

from zoo.engine.gpu import gpu_status  # noqa: E402


def pytest_collection_modifyitems(config, items):
    import torch
    faked = os.environ.get(FAKE_GPU) == "1"
    available, reason = (True, "") if faked else gpu_status()
    cuda = faked or torch.cuda.is_available()
    skip_trt = pytest.mark.skip(reason=f"needs an NVIDIA GPU with TensorRT: {reason}")
    skip_cuda = pytest.mark.skip(reason="needs a CUDA device visible to PyTorch (CPU build of torch, or no GPU)")
    for item in items:
        if "tensorrt" in item.keywords and not available:
            item.add_marker(skip_trt)
        elif "cuda" in item.keywords and not cuda:
            item.add_marker(skip_cuda)
        elif "tensorrt" in item.keywords or "cuda" in item.keywords:
            item.runtest = gpu_runtest(item, os.environ)


def gpu_runtest(item, environ):
    """How a GPU test runs: here when the interpreter is off; from the interpreted suite, once in a fresh process.
    A fresh process never starts another: if TRITON_INTERPRET is set there (a module set it at import), the test
    fails saying so, rather than re-launching itself without end."""
    if not environ.get("TRITON_INTERPRET"):
        return item.runtest
    if environ.get(FRESH):
        def refuse():
            pytest.fail("TRITON_INTERPRET is set in the fresh process meant to run this GPU test without it (set at "
                        "import by a test module?); not starting another process", pytrace=False)
        return refuse
    return _in_fresh_process(item)


def _in_fresh_process(item):
    """Run this one test in a new pytest process with the interpreter off; its failure is this test's failure,
    its skip this test's skip. The process gets its own session, so a timeout ends it and all it started."""
    def runtest():
        env = {k: v for k, v in os.environ.items() if k != "TRITON_INTERPRET"}
        env[FRESH] = "1"
        proc = subprocess.Popen([sys.executable, "-m", "pytest", "-q", "-rs", "-p", "no:cacheprovider", item.nodeid],
                                cwd=str(item.config.rootpath), env=env, stdout=subprocess.PIPE,
                                stderr=subprocess.PIPE, text=True, start_new_session=True)
        try:
            out, err = proc.communicate(timeout=FRESH_TIMEOUT_S)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            out, err = proc.communicate()
            pytest.fail(f"no result after {FRESH_TIMEOUT_S} s in a fresh process:\n{out[-3000:]}", pytrace=False)
        if proc.returncode != 0:
            pytest.fail(f"in a fresh process without TRITON_INTERPRET:\n{out[-4000:]}{err[-2000:]}", pytrace=False)
        skipped = [line for line in out.splitlines() if line.startswith("SKIPPED")]
        if skipped and " passed" not in out:
            pytest.skip(f"in a fresh process: {skipped[0].split(': ', 1)[-1]}")
    return runtest


@pytest.fixture
def run_fresh():
    """Run code in a new interpreter without TRITON_INTERPRET (compiling to PTX needs Triton's real compiler)."""
    import subprocess
    import sys
    import textwrap
    from pathlib import Path

    root = Path(__file__).resolve().parents[1]

    def run(code: str, timeout: int = 300) -> subprocess.CompletedProcess:
        env = {k: v for k, v in os.environ.items() if k != "TRITON_INTERPRET"}
        env["PYTHONPATH"] = str(root) + os.pathsep + env.get("PYTHONPATH", "")
        return subprocess.run([sys.executable, "-c", textwrap.dedent(code)], cwd=root, env=env, capture_output=True,
                              text=True, timeout=timeout)

    return run
