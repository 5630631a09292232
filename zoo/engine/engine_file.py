"""Engine files: a small JSON header with what the builder knew, then the backend's payload.

    ZOO-ENGINE 1\n | header length (8 bytes, little endian) | header JSON | payload

The header (model, variant, model config, input, batch range, precision, backend, TensorRT version, GPU name) is
checked at load. A pipeline of several networks is one file too: its header lists each network's own header and
payload size in `stages`, and the payload is theirs concatenated (see zoo.engine.pipeline). An engine for another
model, TensorRT version or GPU is refused with a message saying which.
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
ZOO_VERSION = "0.1.0"        # the zoo that writes engines; see compatible_version
MAX_HEADER_BYTES = 1 << 20   # real headers are a few kB; a larger length is a damaged or foreign file


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
    zoo_version: str = ZOO_VERSION
    profile: dict | None = None       # {"min", "opt", "max": full input shapes} when more than the batch is dynamic
    stages: list | None = None        # a pipeline: [{"name", "bytes", "header"}] per network (zoo.engine.pipeline)


def compatible_version(version: str, current: str = ZOO_VERSION) -> bool:
    """Engines are readable by the zoo that wrote them and by later zoos of the same release series: the same
    major version (for 0.x, the same minor, since 0.x releases may change the format), and not newer than this
    zoo (an older zoo cannot know what a newer one wrote)."""
    try:
        got = tuple(int(p) for p in str(version).split("."))
        here = tuple(int(p) for p in current.split("."))
    except ValueError:
        return False
    series = 2 if here[0] == 0 else 1
    return len(got) == 3 and got[:series] == here[:series] and got <= here


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
            size = os.fstat(f.fileno()).st_size
            if length > min(MAX_HEADER_BYTES, size - len(start)):
                raise EngineFileError(f"{path}: damaged engine file (header length {length} bytes, but the file has "
                                      f"{size - len(start)} bytes after the magic and headers are under "
                                      f"{MAX_HEADER_BYTES})")
            head = f.read(length)
    except FileNotFoundError:
        raise EngineFileError(f"{path}: no such engine file") from None
    except IsADirectoryError:
        raise EngineFileError(f"{path}: is a folder, not an engine file") from None
    except OSError as e:
        raise EngineFileError(f"{path}: cannot read: {e.strerror or e}") from None
    try:
        fields = json.loads(head)
        header = EngineHeader(**fields)
    except (ValueError, TypeError) as e:
        raise EngineFileError(f"{path}: damaged engine header ({_cut(e)})") from None
    _check_header(path, header)
    return header, len(MAGIC) + 8 + length


def _check_header(path, header: EngineHeader) -> None:
    """Field types a lying or damaged header could get wrong, and the zoo version that wrote it."""
    if not compatible_version(header.zoo_version):
        raise EngineFileError(f"{path}: written by zoo {_cut(header.zoo_version, 40)}; this zoo ({ZOO_VERSION}) reads "
                              f"engines of zoo {ZOO_VERSION.rsplit('.', 1)[0]}.x up to {ZOO_VERSION}: rebuild it")
    batch = header.batch
    if not (isinstance(batch, list) and len(batch) == 3 and all(isinstance(b, int) for b in batch)
            and 1 <= batch[0] <= batch[1] <= batch[2]):
        raise EngineFileError(f"{path}: damaged engine header (batch {_cut(batch, 60)} is not [min, opt, max] with "
                              f"1 <= min <= opt <= max)")
    if not (isinstance(header.outputs, list) and all(isinstance(o, str) for o in header.outputs)
            and isinstance(header.input_name, str) and isinstance(header.config, dict)
            and isinstance(header.input_shape, list)):
        raise EngineFileError(f"{path}: damaged engine header (input, outputs or config of the wrong type)")


def _cut(value, limit: int = 200) -> str:
    text = str(value)
    return text if len(text) <= limit else f"{text[:limit]}...({len(text)} characters)"


def read_engine(path: str | os.PathLike, expect_model: str | None = None) -> tuple[EngineHeader, bytes]:
    header, offset = read_header(path)
    if expect_model and header.model != expect_model:
        raise EngineFileError(f"{path}: this engine was built for model '{header.model}' ({header.variant}), "
                              f"not '{expect_model}'")
    with open(path, "rb") as f:
        f.seek(offset)
        return header, f.read()
