"""ONNX forms of the zoo's plugins: a registry keyed by plugin id, filled by the plugin packages themselves.

A plugin package registers, next to its reference forward and its TensorRT registration, how to write the same
computation as plain ONNX operators:

    from zoo.engine.onnx.plugins import register_onnx_form
    register_onnx_form("zoo::yolo_decode", decode_onnx)

    def decode_onnx(g, xs, ys, *, specs, name, **attrs):  # g: OnnxGraph; xs/ys: value names; specs: [(shape, dtype)]
        ...                                               # writes nodes computing ys[i] from xs

This module imports nothing heavy, so plugin packages can register unconditionally. A plugin without an ONNX form
is an error naming it when a network using it is written as ONNX.
"""
from __future__ import annotations

from typing import Callable

_FORMS: dict[str, Callable] = {}


def register_onnx_form(op_id: str, form: Callable) -> None:
    if "::" not in op_id:
        raise ValueError(f"plugin id {op_id!r} must be 'namespace::name'")
    _FORMS[op_id] = form


def registered() -> list[str]:
    return sorted(_FORMS)


def onnx_form(op_id: str, layer_name: str = "") -> Callable:
    try:
        return _FORMS[op_id]
    except KeyError:
        where = f"layer {layer_name!r}: " if layer_name else ""
        raise ValueError(f"{where}plugin {op_id!r} has no ONNX form (registered: {registered()}); register one "
                         f"with zoo.engine.onnx.plugins.register_onnx_form in the plugin's package") from None
