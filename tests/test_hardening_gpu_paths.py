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
