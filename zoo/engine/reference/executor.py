"""Runs a reference network on the CPU: layers in topological order, each output stored in its declared type.

FP16 tensors are stored in half precision (so FP16 error is real), while each layer computes in FP32, as TensorRT's
FP16 kernels accumulate in FP32. Intermediate values are freed after their last use unless the caller asks to
capture them (validation compares every named tensor with PyTorch).
"""
from __future__ import annotations

import numpy as np
import torch

from .fusion import fuse
from .network import INetworkDefinition, ITensor, NetworkError, torch_dtype

_LOW_PRECISION = (torch.float16, torch.bfloat16)


class ReferenceExecutor:
    """`device`: where the network runs ("cpu", or "cuda" where PyTorch has CUDA: weights are moved there once,
    inputs on each run, and plugins run their GPU kernels instead of their PyTorch references)."""

    def __init__(self, network: INetworkDefinition, device: str = "cpu"):
        if not network.num_outputs:
            raise NetworkError("the network has no outputs: mark at least one tensor with mark_output")
        self.network = network
        self.device = torch.device(device)
        self.layers = self._needed_layers()
        for layer in self.layers:  # infers every shape and type; raises NetworkError naming the layer
            for out in layer._outputs:
                network._meta(out)
        with self.device:  # tensors that layers and fusion create land on the device
            for layer in self.layers:
                layer._prepare()
                _move_tensors(layer, self.device)
            self._fused = fuse(self.layers, {id(t) for t in network._outputs})
        self._last_use = self._last_uses(self._fused)
        self._constant_pointers = {layer._t.data_ptr() for layer in self.layers if hasattr(layer, "_t")
                                   and isinstance(layer._t, torch.Tensor)}

    def _needed_layers(self):
        needed: set[int] = set()
        stack = [t._layer for t in self.network._outputs if t._layer is not None]
        while stack:
            layer = stack.pop()
            if id(layer) not in needed:
                needed.add(id(layer))
                stack.extend(t._layer for t in layer._inputs if t is not None and t._layer is not None)
        return [layer for layer in self.network._layers if id(layer) in needed]

    def _last_uses(self, steps) -> dict[int, int]:
        last: dict[int, int] = {}
        for position, layer in enumerate(steps):
            for t in layer._inputs:
                if t is not None:
                    last[id(t)] = position
        for t in self.network._outputs:
            last[id(t)] = len(steps)
        return last

    def _feed(self, tensor: ITensor, value) -> torch.Tensor:
        value = torch.from_numpy(np.ascontiguousarray(value)) if isinstance(value, np.ndarray) else value
        want = torch_dtype(tensor.dtype)
        if value.dtype != want:
            raise NetworkError(f"input {tensor.name!r} must be {want}, got {value.dtype}")
        declared = tensor.shape
        if value.dim() != len(declared) or any(d >= 0 and d != v for d, v in zip(declared, value.shape)):
            raise NetworkError(f"input {tensor.name!r} has shape {tuple(value.shape)}, the network declares "
                               f"{tuple(declared)}")
        return value.to(self.device)

    @torch.inference_mode()
    def run(self, feeds: dict, capture: bool = False) -> dict[str, torch.Tensor]:
        """Outputs by name; with `capture`, every tensor computed (by tensor name) as well."""
        tf32 = torch.backends.cudnn.allow_tf32
        torch.backends.cudnn.allow_tf32 = False  # FP32 means FP32 on a GPU too: TF32 convolutions lose 1e-3
        try:
            with self.device:  # tensors a layer creates while running (index grids, constants) land on the device
                return self._run(feeds, capture)
        finally:
            torch.backends.cudnn.allow_tf32 = tf32

    def _run(self, feeds: dict, capture: bool) -> dict[str, torch.Tensor]:
        values: dict[int, torch.Tensor] = {}
        inputs = {id(t) for t in self.network._inputs}
        for tensor in self.network._inputs:
            if tensor.name not in feeds:
                raise NetworkError(f"missing input {tensor.name!r} (inputs: {[t.name for t in self.network._inputs]})")
            values[id(tensor)] = self._feed(tensor, feeds[tensor.name])
        captured: dict[str, torch.Tensor] = {}
        steps = self.layers if capture else self._fused  # capturing needs every intermediate: no fusion
        for position, layer in enumerate(steps):
            xs = [None if t is None else values[id(t)] for t in layer._inputs]
            xs = [x.float() if x is not None and x.dtype in _LOW_PRECISION else x for x in xs]
            for out, y in zip(layer._outputs, layer._run(xs)):
                want = torch_dtype(out.dtype)
                values[id(out)] = y if y.dtype == want else y.to(want)
                if capture:
                    captured[out.name] = values[id(out)]
            for t in layer._inputs:
                if t is not None and not capture and self._last_use.get(id(t)) == position and not t.is_network_input:
                    values.pop(id(t), None)
        # An output that is a constant or an input (through identity or a same-type cast) must not alias them.
        shared = {v.data_ptr() for k, v in values.items() if k in inputs} | self._constant_pointers
        outputs = {t.name: values[id(t)].clone() if values[id(t)].data_ptr() in shared else values[id(t)]
                   for t in self.network._outputs}
        return {**captured, **outputs} if capture else outputs


def _move_tensors(layer, device: torch.device) -> None:
    """A prepared layer's tensors (weights, folded kernels, tables) onto `device`, once."""
    if device.type == "cpu":
        return
    for name, value in vars(layer).items():
        if isinstance(value, torch.Tensor):
            setattr(layer, name, value.to(device))
        elif isinstance(value, dict) and any(isinstance(v, torch.Tensor) for v in value.values()):
            setattr(layer, name, {k: v.to(device) if isinstance(v, torch.Tensor) else v for k, v in value.items()})
