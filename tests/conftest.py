"""Shared test setup: GPU markers skip cleanly, with the reason, where their hardware or software is missing.

- `cuda`: needs a CUDA device visible to PyTorch (and Triton); no TensorRT. The lent GPU machine runs these.
- `tensorrt` (and the older `gpu`): needs TensorRT and a GPU.
"""
import os

os.environ.setdefault("TRITON_INTERPRET", "1")  # Triton kernels run on the CPU interpreter in tests

import pytest  # noqa: E402

from zoo.engine.gpu import gpu_status  # noqa: E402


def pytest_collection_modifyitems(config, items):
    import torch
    available, reason = gpu_status()
    skip_trt = pytest.mark.skip(reason=f"needs an NVIDIA GPU with TensorRT: {reason}")
    skip_cuda = pytest.mark.skip(reason="needs a CUDA device visible to PyTorch (CPU build of torch, or no GPU)")
    for item in items:
        if not available and ("gpu" in item.keywords or "tensorrt" in item.keywords):
            item.add_marker(skip_trt)
        elif "cuda" in item.keywords and not torch.cuda.is_available():
            item.add_marker(skip_cuda)


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
