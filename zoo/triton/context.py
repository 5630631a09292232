"""A model's per-image context (what `records` needs after the network) carried between ensemble steps as JSON.

Contexts hold plain values, the letterbox geometry (a dataclass) and the decoded image. The image itself is not
sent on: post-processing only needs its shape, so it arrives as a zero-stride array of that shape (no memory).
Only dataclasses defined in the zoo's own modules are rebuilt, with their fields as keyword arguments.
"""
from __future__ import annotations

import dataclasses
import importlib
import json

import numpy as np


def dumps(context) -> str:
    return json.dumps(_encode(context))


def loads(text: str | bytes):
    return _decode(json.loads(text))


def _encode(value):
    if isinstance(value, np.ndarray):
        return {"__shape__": list(value.shape), "dtype": value.dtype.str}
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        cls = type(value)
        return {"__dataclass__": f"{cls.__module__}:{cls.__qualname__}",
                "fields": {f.name: _encode(getattr(value, f.name)) for f in dataclasses.fields(value)}}
    if isinstance(value, dict):
        return {k: _encode(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_encode(v) for v in value]
    if isinstance(value, np.generic):
        return value.item()
    return value


def _decode(value):
    if isinstance(value, dict):
        if "__shape__" in value:
            return np.broadcast_to(np.zeros((), np.dtype(value["dtype"])), tuple(value["__shape__"]))
        if "__dataclass__" in value:
            module, _, name = value["__dataclass__"].partition(":")
            if module.split(".")[0] not in ("zoo", "plugins"):  # the zoo's own packages only
                raise ValueError(f"context names a class outside the zoo: {value['__dataclass__']}")
            cls = getattr(importlib.import_module(module), name)
            if not dataclasses.is_dataclass(cls):
                raise ValueError(f"context names {value['__dataclass__']}, which is not a dataclass")
            return cls(**{k: _decode(v) for k, v in value["fields"].items()})
        return {k: _decode(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_decode(v) for v in value]
    return value
