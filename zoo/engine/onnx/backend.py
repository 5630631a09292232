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

    def load(self, payload: bytes) -> OnnxRunner:
        return OnnxRunner(payload)

    def runner_for(self, network) -> OnnxRunner:
        """Run a network just defined; the batch dimension stays symbolic."""
        return OnnxRunner(self.build(network))

    def describe(self) -> dict:
        return {"tensorrt_version": None, "gpu": None}
