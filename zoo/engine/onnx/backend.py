"""The ONNX backend: builders record into the shared INetworkDefinition, `build` writes ONNX, ONNX Runtime runs it.

The payload of an engine file with backend "onnx" is a plain, self-contained .onnx model (opset in graph.OPSET).
"""
from __future__ import annotations

from ..backend_api import BuildOptions
from .runner import OnnxRunner


class OnnxBackend:
    name = "onnx"

    def create_network(self):
        from .network import INetworkDefinition
        return INetworkDefinition()

    def build(self, network, options: BuildOptions | None = None) -> bytes:
        from .writer import to_onnx
        batch = tuple(options.batch) if options is not None else None
        return to_onnx(network, batch=batch).SerializeToString()

    def load(self, payload: bytes, cache_beside=None) -> OnnxRunner:
        """`cache_beside`: the engine file beside which ONNX Runtime's optimised graph is kept (see runner)."""
        return OnnxRunner(payload, cache_beside=cache_beside)

    def load_reference_engine(self, payload: bytes, cache_beside=None) -> OnnxRunner:
        """A reference-backend engine run by ONNX Runtime: its recorded network written as ONNX (skipped when the
        optimised graph is cached beside the engine)."""
        return OnnxRunner(payload, cache_beside=cache_beside, translate=_reference_payload_to_onnx)

    def runner_for(self, network) -> OnnxRunner:
        """Run a network just defined; the batch dimension stays symbolic."""
        return OnnxRunner(self.build(network))

    def describe(self) -> dict:
        return {"tensorrt_version": None, "gpu": None}


def _reference_payload_to_onnx(payload: bytes) -> bytes:
    from ..reference.serialize import loads
    from .writer import to_onnx
    network = loads(payload)
    batch = getattr(network, "_profile", None)
    return to_onnx(network, batch=tuple(batch) if batch else None).SerializeToString()
