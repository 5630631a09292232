"""Shared test setup: the GPU marker skips cleanly, with the reason, where no GPU and TensorRT exist."""
import os

os.environ.setdefault("TRITON_INTERPRET", "1")  # Triton kernels run on the CPU interpreter in tests

import pytest  # noqa: E402

from zoo.engine.gpu import gpu_status  # noqa: E402


def pytest_collection_modifyitems(config, items):
    available, reason = gpu_status()
    if available:
        return
    skip = pytest.mark.skip(reason=f"needs an NVIDIA GPU with TensorRT: {reason}")
    for item in items:
        if "gpu" in item.keywords:
            item.add_marker(skip)


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
