"""Is there a GPU TensorRT can use? Probed without initialising CUDA in a way that could abort the process."""
from __future__ import annotations

import functools


@functools.lru_cache(maxsize=1)
def gpu_status() -> tuple[bool, str]:
    """(available, reason). cudaGetDeviceCount returns an error code instead of raising when there is no driver."""
    try:
        import tensorrt  # noqa: F401
    except ImportError:
        return False, "the tensorrt package is not installed"
    try:
        from cuda.bindings import runtime as cudart
    except ImportError:
        return False, "cuda-python is not installed"
    try:
        err, count = cudart.cudaGetDeviceCount()
    except Exception as e:  # a missing driver library can surface as an exception on some versions
        return False, f"no CUDA driver ({e.__class__.__name__})"
    if err != cudart.cudaError_t.cudaSuccess or count == 0:
        return False, f"no CUDA device ({getattr(err, 'name', err)})"
    import torch
    if not torch.cuda.is_available():  # the runner hands its outputs over as CUDA tensors of PyTorch
        return False, (f"{count} CUDA device(s), but PyTorch {torch.__version__} has no CUDA (a CPU build): install "
                       f"PyTorch's CUDA build")
    return True, f"{count} CUDA device(s)"


def gpu_available() -> bool:
    return gpu_status()[0]
