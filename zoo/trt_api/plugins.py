"""Plugins off TensorRT: the counterpart of `tensorrt.plugin` (QDP) for the reference and ONNX backends.

A plugin package registers, next to its TensorRT QDP definition, a shape function and a PyTorch forward (what the
reference backend runs) and its ONNX form (plain ONNX operators, for the ONNX backend and `export onnx`):

    plugins.register("zoo::yolo_decode", shapes=decode_shapes, forward=decode_reference)
    plugins.register_onnx_form("zoo::yolo_decode", decode_onnx)

    def decode_onnx(g, xs, ys, *, specs, name, **attrs):  # g: the ONNX graph; xs/ys: value names; specs: shapes
        ...                                               # writes nodes computing ys[i] from xs

`op.zoo.yolo_decode(x, stride=8)` then returns a request that `INetworkDefinition.add_plugin` accepts, as
`tensorrt.plugin.op.zoo.yolo_decode(...)` does on TensorRT. Engines store the op id and the module that registered
it; only modules of the zoo's own `plugins` package are imported back when an engine is loaded. These are plain
registries: the backends read them, the plugin packages fill them, and neither imports the other.
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


def add_plugin_op(net, op_id: str, inputs: list, attrs: dict, *, name: str, qdp_module: str,
                  name_output: bool = True):
    """Add plugin op `op_id` ("namespace::name") on `inputs` with `attrs` to `net` as one AOT plugin layer named
    `name`; returns its first output (named `name` too unless `name_output` is False). On TensorRT's own network
    the request is `tensorrt.plugin`'s, after `qdp_module` (the package's `trt_plugin`, which declares the QDP op
    to TensorRT) is imported; on the zoo's recorders it is this module's `op`. TensorRT checks the attributes'
    types and order against the QDP declaration, so `attrs` must already be plain ints, floats and tuples."""
    from . import is_tensorrt_network
    namespace, _, op_name = op_id.partition("::")
    if is_tensorrt_network(net):
        if not qdp_module.startswith(_TRUSTED_PREFIX):
            raise ValueError(f"plugin {op_id!r}: QDP module {qdp_module!r} is outside the zoo's plugins package")
        import tensorrt.plugin as trtp

        importlib.import_module(qdp_module)  # registers the QDP op with TensorRT, once
        ops = trtp.op
    else:
        ops = op
    request = getattr(getattr(ops, namespace), op_name)(*inputs, **attrs)
    layer = net.add_plugin(request, aot=True)
    layer.name = name
    out = layer.get_output(0)
    if name_output:
        out.name = name
    return out


# ----------------------------------------------------------------------------------------------------------------
# ONNX forms: a plugin without one is an error naming it when a network using it is written as ONNX

_FORMS: dict[str, Callable] = {}


def register_onnx_form(op_id: str, form: Callable) -> None:
    if "::" not in op_id:
        raise ValueError(f"plugin id {op_id!r} must be 'namespace::name'")
    _FORMS[op_id] = form


def registered_onnx_forms() -> list[str]:
    return sorted(_FORMS)


def onnx_form(op_id: str, layer_name: str = "") -> Callable:
    try:
        return _FORMS[op_id]
    except KeyError:
        where = f"layer {layer_name!r}: " if layer_name else ""
        raise ValueError(f"{where}plugin {op_id!r} has no ONNX form (registered: {registered_onnx_forms()}); "
                         f"register one with zoo.trt_api.plugins.register_onnx_form in the plugin's package") from None
