"""What every executor of a network definition implements, and what it is built with.

    backend.create_network() -> a network builders write into
    backend.build(network, BuildOptions(...)) -> payload bytes (a TensorRT plan, a reference payload, an ONNX model)
    backend.load(payload) -> Runner: runner.run({"input": batch}) -> {"output": tensor}

The backends (reference in backends.py, zoo.engine.tensorrt, zoo.engine.onnx) import this module; the choice
between them (backends.choose_backend) imports them. Nothing here imports a backend.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

import torch


@dataclass
class BuildOptions:
    input_name: str
    batch: tuple[int, int, int] = (1, 1, 8)     # optimization profile: min, opt, max (enforced by both backends)
    workspace_bytes: int = 2 << 30
    timing_cache: str | None = None
    allow_tf32: bool = True                       # off for validation: TF32 would blur FP32 comparisons
    shapes: dict | None = None                    # {input name: (min, opt, max) full shapes}: a profile over more
                                                  # than the batch (e.g. a fully convolutional net's height, width)
    contexts: int = 1                             # TensorRT: execution contexts that may run at once (a profile each)


class Runner(Protocol):
    device: str

    def run(self, feeds: dict) -> dict[str, torch.Tensor]: ...


class Backend(Protocol):
    name: str

    def create_network(self): ...

    def build(self, network, options: BuildOptions) -> bytes: ...

    def load(self, payload: bytes) -> Runner: ...

    def describe(self) -> dict: ...


class ArrayKeeper:
    """A network that keeps every numpy array handed to it alive until the build is over.

    TensorRT's Weights point at the caller's memory without copying it (docs/tensorrt.md §3), and
    builders pass temporaries (weights cast to FP16, BatchNorm folded into kernels): without this, the memory
    could be reused before `build_serialized_network` reads it. Everything else passes through unchanged.
    """

    def __init__(self, network):
        self.network = network
        self.arrays: list = []

    def __getattr__(self, name: str):
        value = getattr(self.network, name)
        if not callable(value):
            return value

        def call(*args, **kwargs):
            self.arrays.extend(a for a in (*args, *kwargs.values()) if hasattr(a, "__array_interface__"))
            return value(*args, **kwargs)

        return call
