"""The weight map builders read from: state_dict keys to arrays, with shape checks that name the key and the file.

Weights arrive flat (from `.wts`, which stores only value counts) or shaped (from a checkpoint); `take` reshapes
either to the shape the builder expects, so one builder serves both. Keys never taken are reported by `unused()`,
which is how a checkpoint of the wrong architecture is noticed.
"""
from __future__ import annotations

from typing import Iterable, Mapping

import numpy as np


class WeightError(ValueError):
    """A missing key or a value count that does not fit the architecture."""


class WeightMap:
    def __init__(self, tensors: Mapping[str, np.ndarray], source: str = "<weights>"):
        self._tensors = dict(tensors)
        self.source = source
        self._taken: set[str] = set()

    def __contains__(self, key: str) -> bool:
        return key in self._tensors

    def keys(self) -> Iterable[str]:
        return self._tensors.keys()

    def arrays(self) -> Mapping[str, np.ndarray]:
        """All arrays, without marking them used (for reading a configuration off the shapes)."""
        return dict(self._tensors)

    def count(self, key: str) -> int:
        return int(self._require(key).size)

    def raw(self, key: str) -> np.ndarray:
        """The stored array as it is (flat for .wts), marked as used."""
        self._taken.add(key)
        return self._require(key)

    def take(self, key: str, shape: tuple[int, ...], dtype=np.float32) -> np.ndarray:
        """The array for `key` as a C-contiguous array of `shape` and `dtype`."""
        array = self._require(key)
        expected = int(np.prod(shape, dtype=np.int64))
        stored_shape = array.shape if array.ndim > 1 else None
        if array.size != expected or (stored_shape is not None and tuple(stored_shape) != tuple(shape)):
            got = f"shape {tuple(array.shape)}" if stored_shape is not None else f"{array.size} values"
            raise WeightError(f"{self.source}: key {key!r} has {got}, the architecture expects shape {tuple(shape)} "
                              f"({expected} values)")
        self._taken.add(key)
        return np.ascontiguousarray(array.reshape(shape), dtype=dtype)

    def set_aside(self, prefix: str) -> None:
        """Count every key under `prefix` as used: parts the network deliberately does not read (the branch of a
        two-branch head that is not built, layers that only training runs)."""
        self._taken.update(k for k in self._tensors if k.startswith(prefix))

    def reset_usage(self) -> None:
        """Forget which keys were taken, before defining another network from the same weights."""
        self._taken.clear()

    def unused(self) -> list[str]:
        """Keys no builder took; BatchNorm's num_batches_tracked counters are never needed."""
        return [k for k in self._tensors if k not in self._taken and not k.endswith("num_batches_tracked")]

    def _require(self, key: str) -> np.ndarray:
        try:
            return self._tensors[key]
        except KeyError:
            near = [k for k in self._tensors if k.rsplit(".", 1)[0] == key.rsplit(".", 1)[0]][:3]
            hint = f" (keys with the same prefix: {near})" if near else ""
            raise WeightError(f"{self.source}: missing key {key!r}{hint}") from None
