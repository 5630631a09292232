"""Reference engines: a network's graph as JSON plus its weights as arrays, in one `.npz` payload.

Loading never unpickles: `numpy.load(allow_pickle=False)` and JSON only. Enums are stored by name, so an engine
written with TensorRT's enums loads where only the reference enums exist, and the other way round.
"""
from __future__ import annotations

import io
import json
import zipfile
import zlib
from typing import Any

import numpy as np

from zoo.trt_api import trt
from .network import LAYER_CLASSES, Dims, INetworkDefinition, ITensor, NetworkError


def _encode(value: Any) -> Any:
    if isinstance(value, Dims):
        return {"dims": list(value)}
    if isinstance(value, (tuple, list)):
        return [_encode(v) for v in value]
    if isinstance(value, dict):
        return {"dict": {k: _encode(v) for k, v in value.items()}}
    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    if isinstance(value, (np.integer, np.floating)):
        return value.item()
    if hasattr(value, "name") and hasattr(type(value), "__members__"):
        return {"enum": f"{type(value).__name__}.{value.name}"}
    raise TypeError(f"cannot serialise layer attribute {value!r}")


def _decode(value: Any) -> Any:
    if isinstance(value, list):
        return tuple(_decode(v) for v in value)
    if isinstance(value, dict):
        if "dims" in value:
            return Dims(value["dims"])
        if "enum" in value:
            enum_name, member = value["enum"].split(".")
            return getattr(getattr(trt, enum_name), member)
        return {k: _decode(v) for k, v in value["dict"].items()}
    return value


def dumps(network: INetworkDefinition, profile: tuple[int, int, int] | None = None) -> bytes:
    """The network as a payload; `profile` (min, opt, max batch) is enforced when the payload is run."""
    refs: dict[int, Any] = {id(t): ["input", i] for i, t in enumerate(network._inputs)}
    arrays: dict[str, np.ndarray] = {}
    layers = []
    for i, layer in enumerate(network._layers):
        for j, out in enumerate(layer._outputs):
            refs[id(out)] = [i, j]
        for key, array in layer._weights.items():
            arrays[f"{i}/{key}"] = array
        layers.append({
            "class": type(layer).__name__, "name": layer.name, "metadata": layer.metadata,
            "inputs": [None if t is None else refs[id(t)] for t in layer._inputs],
            "outputs": [t.name for t in layer._outputs],
            "attrs": {k: _encode(v) for k, v in layer._attrs.items()},
            "weights": sorted(layer._weights),
        })
    graph = {
        "name": network.name, "flags": network.flags,
        "inputs": [{"name": t.name, "dtype": _encode(t.dtype), "shape": list(t.shape)} for t in network._inputs],
        "layers": layers,
        "outputs": [refs[id(t)] for t in network._outputs],
        "profile": list(profile) if profile else None,
    }
    buffer = io.BytesIO()
    np.savez(buffer, __graph__=np.frombuffer(json.dumps(graph).encode(), np.uint8), **arrays)
    return buffer.getvalue()


def loads(data: bytes) -> INetworkDefinition:
    """The network `dumps` wrote; a damaged or foreign payload is a NetworkError, whatever part of it is broken."""
    try:
        return _loads(data)
    except NetworkError:
        raise
    except (ValueError, KeyError, IndexError, TypeError, AttributeError, OSError, EOFError, zipfile.BadZipFile,
            zlib.error) as e:
        raise NetworkError(f"not a valid reference engine payload ({type(e).__name__}: {e})") from None


def _loads(data: bytes) -> INetworkDefinition:
    archive = np.load(io.BytesIO(data), allow_pickle=False)
    graph = json.loads(archive["__graph__"].tobytes().decode())
    network = INetworkDefinition(int(graph.get("flags", 0)))
    network.name = graph.get("name", network.name)
    tensors: dict[tuple, ITensor] = {}
    for i, spec in enumerate(graph["inputs"]):
        tensors[("input", i)] = network.add_input(spec["name"], _decode(spec["dtype"]), spec["shape"])
    for i, spec in enumerate(graph["layers"]):
        cls = LAYER_CLASSES.get(spec["class"])
        if cls is None:
            raise NetworkError(f"unknown layer class {spec['class']!r} in the engine")
        inputs = [None if r is None else tensors[tuple(r)] for r in spec["inputs"]]
        attrs = {k: _decode(v) for k, v in spec["attrs"].items()}
        weights = {k: archive[f"{i}/{k}"] for k in spec["weights"]}
        layer = cls(network, inputs, len(spec["outputs"]), attrs, weights)
        network._layers.append(layer)
        layer.name = spec["name"]
        layer.metadata = spec.get("metadata", "")
        for j, name in enumerate(spec["outputs"]):
            layer._outputs[j].name = name
            tensors[(i, j)] = layer._outputs[j]
    for ref in graph["outputs"]:
        network.mark_output(tensors[tuple(ref)])
    profile = graph.get("profile")
    network._profile = tuple(int(b) for b in profile) if profile else None
    return network
