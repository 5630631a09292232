"""What reading a weights file gives (`Checkpoint`) and how it fails (`CheckpointError`): the types that every
reader shares (checkpoint.py for .pt/.pth/.wts/TorchScript, onnx_weights.py for ONNX), below all of them."""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np


class CheckpointError(ValueError):
    """A checkpoint that cannot be read, holds no tensors, or asks for code to run."""


@dataclass
class Checkpoint:
    tensors: dict[str, np.ndarray]                      # float32, original shapes, state_dict order
    names: list[str] | dict[int, str] | None = None     # class names, when the checkpoint carries them
    source: str = ""                                    # what kind of file it was
    meta: dict | None = None                            # what a pickled model recorded (see _model_meta)
