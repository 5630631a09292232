"""Shared test setup: GPU markers skip cleanly, with the reason, where their hardware or software is missing.

- `cuda`: needs a CUDA device visible to PyTorch (and Triton); no TensorRT. The lent GPU machine runs these.
- `tensorrt`: needs TensorRT and a GPU.

Kernel tests run on the CPU under Triton's interpreter (TRITON_INTERPRET=1, set here before anything imports
triton). GPU tests must not: Triton compiles for the device and TensorRT's AOT plugin compiles PTX. So on a machine
where they run, each `cuda` / `tensorrt` test runs in a fresh pytest process without TRITON_INTERPRET.
"""
import os

FRESH = "ZOO_TEST_NO_INTERPRETER"  # set in the fresh process that runs one GPU test
if not os.environ.get(FRESH):
    os.environ.setdefault("TRITON_INTERPRET", "1")  # Triton kernels run on the CPU interpreter in tests

import pytest  # noqa: E402

from zoo.engine.gpu import gpu_status  # noqa: E402


def pytest_collection_modifyitems(config, items):
    import torch
    available, reason = gpu_status()
    skip_trt = pytest.mark.skip(reason=f"needs an NVIDIA GPU with TensorRT: {reason}")
    skip_cuda = pytest.mark.skip(reason="needs a CUDA device visible to PyTorch (CPU build of torch, or no GPU)")
    for item in items:
        if "tensorrt" in item.keywords and not available:
            item.add_marker(skip_trt)
        elif "cuda" in item.keywords and not torch.cuda.is_available():
            item.add_marker(skip_cuda)
        elif ("tensorrt" in item.keywords or "cuda" in item.keywords) and os.environ.get("TRITON_INTERPRET"):
            item.runtest = _in_fresh_process(item)


def _in_fresh_process(item):
    """Run this one test in a new pytest process with the interpreter off; its failure is this test's failure."""
    def runtest():
        import subprocess
        import sys
        env = {k: v for k, v in os.environ.items() if k != "TRITON_INTERPRET"}
        env[FRESH] = "1"
        proc = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", item.nodeid],
                              cwd=str(item.config.rootpath), env=env, capture_output=True, text=True, timeout=1800)
        if proc.returncode != 0:
            pytest.fail(f"in a fresh process without TRITON_INTERPRET:\n{proc.stdout[-4000:]}{proc.stderr[-2000:]}",
                        pytrace=False)
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
