"""Engine files: a small JSON header with what the builder knew, then the backend's payload.

    ZOO-ENGINE 1\n | header length (8 bytes, little endian) | header JSON | payload

The header (model, variant, model config, input, batch range, precision, backend, TensorRT version, GPU name) is
checked at load: an engine for another model, TensorRT version or GPU is refused with a message saying which.
Files are written to a temporary name and renamed, so a failed build never leaves a half-written engine.
"""
from __future__ import annotations

import json
import os
import struct
from dataclasses import asdict, dataclass, field
from pathlib import Path

from .files import write_bytes_atomic

MAGIC = b"ZOO-ENGINE 1\n"


class EngineFileError(ValueError):
    pass


@dataclass
class EngineHeader:
    model: str
    variant: str
    backend: str                      # "reference" | "tensorrt"
    input_name: str
    input_shape: list[int]            # with -1 for the dynamic batch
    batch: list[int]                  # [min, opt, max]
    precision: str
    outputs: list[str]
    config: dict = field(default_factory=dict)   # the model's configuration, as inferred from its weights
    tensorrt_version: str | None = None
    gpu: str | None = None
    zoo_version: str = "0.1.0"
    profile: dict | None = None       # {"min", "opt", "max": full input shapes} when more than the batch is dynamic


def write_engine(path: str | os.PathLike, header: EngineHeader, payload: bytes) -> None:
    head = json.dumps(asdict(header), indent=1).encode()
    write_bytes_atomic(path, MAGIC + struct.pack("<Q", len(head)) + head, payload)


def read_header(path: str | os.PathLike) -> tuple[EngineHeader, int]:
    """The header and the offset of the payload."""
    path = Path(path)
    try:
        with open(path, "rb") as f:
            start = f.read(len(MAGIC) + 8)
            if len(start) < len(MAGIC) + 8 or not start.startswith(MAGIC):
                raise EngineFileError(f"{path}: not a zoo engine file (a raw TensorRT plan or another file?)")
            (length,) = struct.unpack("<Q", start[len(MAGIC):])
            head = f.read(length)
    except FileNotFoundError:
        raise EngineFileError(f"{path}: no such engine file") from None
    try:
        header = EngineHeader(**json.loads(head))
    except (ValueError, TypeError) as e:
        raise EngineFileError(f"{path}: damaged engine header ({e})") from None
    return header, len(MAGIC) + 8 + length


def read_engine(path: str | os.PathLike, expect_model: str | None = None) -> tuple[EngineHeader, bytes]:
    header, offset = read_header(path)
    if expect_model and header.model != expect_model:
        raise EngineFileError(f"{path}: this engine was built for model '{header.model}' ({header.variant}), "
                              f"not '{expect_model}'")
    with open(path, "rb") as f:
        f.seek(offset)
        return header, f.read()
