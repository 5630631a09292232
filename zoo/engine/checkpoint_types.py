"""What reading a weights file gives (`Checkpoint`) and how it fails (`CheckpointError`): the types that every
reader shares (checkpoint.py for .pt/.pth/.wts/TorchScript, onnx_weights.py for ONNX), below all of them."""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .errors import cut


class CheckpointError(ValueError):
    """A checkpoint that cannot be read, holds no tensors, or asks for code to run."""


@dataclass
class Checkpoint:
    tensors: dict[str, np.ndarray]                      # float32, original shapes, state_dict order
    names: list[str] | dict[int, str] | None = None     # class names, when the checkpoint carries them
    source: str = ""                                    # what kind of file it was
    meta: dict | None = None                            # what a pickled model recorded (see _model_meta)

def refuse_nonfinite(path: str, name: str, array: np.ndarray) -> np.ndarray:
    """The same rule as wts.load: NaN or Inf weights are refused, whatever the format."""
    finite = np.isfinite(array)
    if not finite.all():
        index = int(np.flatnonzero(~finite.ravel())[0])
        raise CheckpointError(f"{path}: key {cut(name)!r}: value at index {index} is {array.ravel()[index]} "
                              f"({int((~finite).sum())} non-finite value(s))")
    return array
