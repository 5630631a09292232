"""trt.Dims and trt.Weights: the value types the reference backend's network takes, offered as `trt.Dims` and
`trt.Weights` where TensorRT is not installed.

Their dtypes are those of the active TensorRT names: `zoo.trt_api` calls `use` with the `tensorrt` module when it
imports, else with the reference names (`names.py`), so a reference network built beside TensorRT speaks
TensorRT's dtypes. This module imports nothing of the facade: `names` imports it.
"""
from __future__ import annotations

from typing import Sequence

import numpy as np

_active = None  # the module whose DataType members Weights uses; set by zoo.trt_api


def use(module) -> None:
    """Make Weights and numpy_to_trt use `module`'s DataType members (the `tensorrt` module, when it imports)."""
    global _active
    _active = module


def numpy_to_trt(dtype):
    """The DataType of a numpy dtype."""
    table = {np.dtype(np.float32): _active.float32, np.dtype(np.float16): _active.float16,
             np.dtype(np.int8): _active.int8, np.dtype(np.int32): _active.int32, np.dtype(np.int64): _active.int64,
             np.dtype(np.bool_): _active.bool, np.dtype(np.uint8): _active.uint8}
    try:
        return table[np.dtype(dtype)]
    except KeyError:
        raise NotImplementedError(f"no TensorRT type for numpy {np.dtype(dtype)}") from None


class Dims(tuple):
    """TensorRT's Dims: a tuple of ints, -1 for a dynamic dimension."""

    MAX_DIMS = 8

    def __new__(cls, shape: Sequence[int] = ()):
        if isinstance(shape, (int, np.integer)):
            shape = (shape,)
        return super().__new__(cls, (int(d) for d in shape))


class Weights:
    """TensorRT's Weights: a typed host array. `Weights(np_array)` or `Weights(trt.float16)` (empty)."""

    def __init__(self, a=None):
        if isinstance(a, (list, tuple)):
            raise TypeError("Weights takes a numpy array or a DataType, not a Python sequence")
        if a is None or not isinstance(a, np.ndarray):
            self._dtype = _active.float32 if a is None else a
            self._array = None
        else:
            self._array = np.ascontiguousarray(a)
            self._dtype = numpy_to_trt(self._array.dtype)

    @property
    def dtype(self):
        return self._dtype

    @property
    def size(self) -> int:
        return 0 if self._array is None else int(self._array.size)

    @property
    def nbytes(self) -> int:
        return 0 if self._array is None else int(self._array.nbytes)

    def numpy(self) -> np.ndarray:
        return self._array
