"""The executors of one network definition (TensorRT, the reference backend, ONNX Runtime), behind one interface.

    backend = choose_backend("auto")            # TensorRT, else ONNX Runtime, else the reference backend
    net = backend.create_network()              # builders write into this, whatever it is
    payload = backend.build(net, BuildOptions(...))
    runner = backend.load(payload)              # runner.run({"input": batch}) -> {"output": tensor}

The interface every backend implements (BuildOptions, Runner, Backend) is `backend_api`, which the TensorRT and ONNX
backends import; this module holds the reference backend and the choice between the three. The reference backend is
a development and validation executor (CPU, PyTorch), not a production path; the CLI says which backend it uses and
why (`backend.reason`). `--backend onnx` (zoo.engine.onnx) writes the network as ONNX and runs it with ONNX Runtime,
the fastest executor on a machine without TensorRT, which is why `auto` prefers it there.
"""
from __future__ import annotations

import torch

from .backend_api import Backend, BuildOptions
from .gpu import gpu_status


class ReferenceRunner:
    def __init__(self, network, device: str = "cpu"):
        from .reference.executor import ReferenceExecutor
        self.network = network
        self.device = device
        self.executor = ReferenceExecutor(network, device)

    def run(self, feeds: dict) -> dict[str, torch.Tensor]:
        profile = getattr(self.network, "_profile", None)
        if profile:  # as TensorRT's set_input_shape refuses a shape outside the optimization profile
            for tensor in self.network._inputs:
                value = feeds.get(tensor.name)
                batch = value.shape[0] if value is not None and len(value.shape) else None
                if tensor.shape[0] == -1 and batch is not None and not profile[0] <= batch <= profile[2]:
                    raise ValueError(f"input {tensor.name!r} has batch {batch}, outside the engine's optimization "
                                     f"profile {profile[0]}..{profile[2]}")
        return self.executor.run(feeds)


class ReferenceBackend:
    """`device` "cuda" runs the reference executor on the GPU, with the plugins' Triton kernels."""

    name = "reference"

    def __init__(self, device: str = "cpu"):
        if device == "cuda" and not torch.cuda.is_available():
            raise RuntimeError("--device cuda: PyTorch sees no CUDA device here (a CPU build of torch, or no GPU)")
        self.device = device

    def create_network(self):
        from .reference.network import INetworkDefinition
        return INetworkDefinition()

    def build(self, network, options: BuildOptions) -> bytes:
        from .reference.executor import ReferenceExecutor
        from .reference.serialize import dumps
        ReferenceExecutor(network)  # infers every shape and type now, so a bad network fails at build time
        return dumps(network, options.batch)

    def load(self, payload: bytes) -> ReferenceRunner:
        from .reference.serialize import loads
        return ReferenceRunner(loads(payload), self.device)

    def runner_for(self, network) -> ReferenceRunner:
        """Run a network just defined, without a serialisation round trip."""
        return ReferenceRunner(network, self.device)

    def describe(self) -> dict:
        return {"tensorrt_version": None, "gpu": None}


def onnxruntime_status() -> tuple[bool, str]:
    """(importable, reason): ONNX Runtime is an optional extra (`pip install .[onnx]`)."""
    try:
        import onnxruntime
    except ImportError:
        return False, "onnxruntime is not installed"
    return True, f"ONNX Runtime {onnxruntime.__version__} is installed"


def choose_backend(name: str = "auto", device: str = "cpu", run_on_onnx: bool = True) -> Backend:
    """The backend `name` asks for; 'auto' takes the fastest that can run here: TensorRT (NVIDIA GPU + TensorRT),
    else ONNX Runtime, else the reference backend. `--device cuda` asks for the reference backend on the GPU, so auto
    keeps it when TensorRT is absent. `run_on_onnx=False` (build, validate) makes auto skip ONNX Runtime: engine
    files for the CPU stay reference engines, which the running commands hand to ONNX Runtime themselves, and
    validate keeps comparing the reference executor. The returned backend's `reason` says why it was chosen."""
    if name == "reference":
        return _because(ReferenceBackend(device), "--backend reference")
    if name == "onnx":
        from .onnx.backend import OnnxBackend
        return _because(OnnxBackend(), "--backend onnx")
    available, reason = gpu_status()
    if name == "tensorrt":
        if not available:
            raise RuntimeError(f"the TensorRT backend cannot run here: {reason}")
        from .tensorrt.backend import TensorRTBackend
        return _because(TensorRTBackend(), "--backend tensorrt")
    if name != "auto":
        raise ValueError(f"unknown backend {name!r} (auto, reference, tensorrt, onnx)")
    if available:
        from .tensorrt.backend import TensorRTBackend
        return _because(TensorRTBackend(), f"auto: TensorRT can run here ({reason})")
    if device == "cuda":
        return _because(ReferenceBackend(device), f"auto with --device cuda; TensorRT not used: {reason}")
    has_onnxruntime, why = onnxruntime_status() if run_on_onnx else (False, "")
    if not run_on_onnx:
        return _because(ReferenceBackend(device), f"auto: TensorRT not used ({reason})")
    if has_onnxruntime:
        from .onnx.backend import OnnxBackend
        return _because(OnnxBackend(), f"auto: TensorRT not used ({reason}); {why}")
    return _because(ReferenceBackend(device), f"auto: TensorRT not used ({reason}); {why}")


def _because(backend, reason: str):
    backend.reason = reason
    return backend
