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
