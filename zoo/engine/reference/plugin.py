"""Plugins on the reference backend: the counterpart of `tensorrt.plugin` (QDP).

A plugin package registers, next to its TensorRT QDP definition, a shape function and a PyTorch forward:

    reference.plugin.register("zoo::yolo_decode", shapes=decode_shapes, forward=decode_reference)

`op.zoo.yolo_decode(x, stride=8)` then returns a request that `INetworkDefinition.add_plugin` accepts, as
`tensorrt.plugin.op.zoo.yolo_decode(...)` does on TensorRT. Engines store the op id and the module that registered
it; only modules of the zoo's own `plugins` package are imported back when an engine is loaded.
"""
from __future__ import annotations

import importlib
from dataclasses import dataclass
from typing import Any, Callable


@dataclass(frozen=True)
class TensorSpec:
    shape: tuple[int, ...]
    dtype: Any  # a trt.DataType member


@dataclass(frozen=True)
class PluginDefinition:
    op_id: str
    shapes: Callable[..., list[TensorSpec]]   # (list[TensorSpec] of inputs, **attrs) -> specs of the outputs
    forward: Callable[..., Any]                # (*torch inputs, **attrs) -> tensor or tuple of tensors
    module: str                                # imported again when an engine using it is loaded
    cuda_forward: str | None = None            # "plugins.x.kernel:function": the GPU kernel, same signature


_REGISTRY: dict[str, PluginDefinition] = {}
_TRUSTED_PREFIX = "plugins."


def register(op_id: str, *, shapes: Callable, forward: Callable, cuda_forward: str | None = None) -> None:
    """`cuda_forward` names the plugin's GPU kernel launcher ("module:function", imported on first use so that
    triton is not needed on a CPU); the reference executor runs it instead of `forward` on CUDA tensors."""
    if "::" not in op_id:
        raise ValueError(f"plugin id {op_id!r} must be 'namespace::name'")
    if cuda_forward is not None and not cuda_forward.startswith(_TRUSTED_PREFIX):
        raise ValueError(f"plugin {op_id!r}: cuda_forward {cuda_forward!r} is outside the zoo's plugins package")
    _REGISTRY[op_id] = PluginDefinition(op_id, shapes, forward, forward.__module__, cuda_forward)


def resolve(path: str) -> Callable:
    """'plugins.x.kernel:function' -> the function."""
    module, _, name = path.partition(":")
    return getattr(importlib.import_module(module), name)


def lookup(op_id: str, module: str | None = None) -> PluginDefinition:
    if op_id not in _REGISTRY and module:
        if not module.startswith(_TRUSTED_PREFIX):
            raise ValueError(f"plugin {op_id!r} comes from module {module!r}, outside the zoo's plugins package")
        importlib.import_module(module)
    if op_id not in _REGISTRY:
        raise KeyError(f"plugin {op_id!r} is not registered with the reference backend (known: {sorted(_REGISTRY)})")
    return _REGISTRY[op_id]


class PluginRequest(tuple):
    """What `op.<ns>.<name>(...)` returns: (op_id, input tensors, attributes)."""

    def __new__(cls, op_id: str, inputs: tuple, attrs: dict):
        return super().__new__(cls, (op_id, tuple(inputs), dict(attrs)))


class _Namespace:
    def __init__(self, path: str = ""):
        self._path = path

    def __getattr__(self, name: str):
        if name.startswith("_"):
            raise AttributeError(name)
        if not self._path:
            return _Namespace(name)
        op_id = f"{self._path}::{name}"
        return lambda *inputs, **attrs: PluginRequest(lookup(op_id).op_id, inputs, attrs)


op = _Namespace()
