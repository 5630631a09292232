"""The TensorRT backend (10.x and 11.x): strongly typed networks, engines with an optimization profile, and a runner.

Only imported where `tensorrt` and a GPU exist. Written against the current API only: enum members by name (their
integer values differ between 10 and 11), `build_serialized_network`, named I/O tensors with `set_input_shape` /
`set_tensor_address` / `execute_async_v3`, memory and streams through cuda-python, never the legacy default stream.
One execution context and one stream per thread, so a runner can be shared by threads.
"""
from __future__ import annotations

import threading
from pathlib import Path

import numpy as np
import tensorrt as trt
import torch
from cuda.bindings import runtime as cudart

from ..backends import ArrayKeeper, BuildOptions
from ..files import write_bytes_atomic

LOGGER = trt.Logger(trt.Logger.WARNING)

_NUMPY_OF = {trt.float32: np.float32, trt.float16: np.float16, trt.int8: np.int8, trt.int32: np.int32,
             trt.int64: np.int64, trt.bool: np.bool_, trt.uint8: np.uint8}


def cuda_check(result):
    """cuda-python calls return (error, *values): raise on error, return the values."""
    err, *values = result
    if err != cudart.cudaError_t.cudaSuccess:
        raise RuntimeError(f"CUDA error: {cudart.cudaGetErrorName(err)[1].decode()}")
    return values[0] if len(values) == 1 else tuple(values) or None


def gpu_name(device: int = 0) -> str:
    props = cuda_check(cudart.cudaGetDeviceProperties(device))
    name = props.name
    return (name.decode() if isinstance(name, bytes) else str(name)).rstrip("\x00")


class DeviceBuffer:
    """cudaMalloc'd memory, visible to PyTorch, CuPy and others through __cuda_array_interface__."""

    def __init__(self, shape, dtype):
        self.shape, self.dtype = tuple(int(d) for d in shape), np.dtype(dtype)
        self.nbytes = int(np.prod(self.shape, dtype=np.int64)) * self.dtype.itemsize
        self.ptr = int(cuda_check(cudart.cudaMalloc(max(self.nbytes, 1))))

    @property
    def __cuda_array_interface__(self) -> dict:
        return {"shape": self.shape, "typestr": self.dtype.str, "data": (self.ptr, False), "version": 3,
                "strides": None}

    def __del__(self):
        if getattr(self, "ptr", 0):
            cudart.cudaFree(self.ptr)
            self.ptr = 0


def _device_pointer(value, name: str, dtype: np.dtype, stream: int) -> tuple[int, tuple, object]:
    """(pointer, shape, object to keep alive) for an input: any __cuda_array_interface__ object, or host numpy."""
    if hasattr(value, "__cuda_array_interface__"):
        cai = value.__cuda_array_interface__
        if np.dtype(cai["typestr"]) != dtype:
            raise ValueError(f"input {name!r} must be {dtype}, got {np.dtype(cai['typestr'])}")
        if cai.get("strides") not in (None, ()):
            expected = tuple(int(np.prod(cai["shape"][i + 1:])) * dtype.itemsize for i in range(len(cai["shape"])))
            if tuple(cai["strides"]) != expected:
                raise ValueError(f"input {name!r} must be C-contiguous")
        if isinstance(value, torch.Tensor):  # produced on torch's stream: let it finish before ours reads it
            torch.cuda.current_stream().synchronize()
        return int(cai["data"][0]), tuple(cai["shape"]), value
    host = np.ascontiguousarray(value)
    if host.dtype != dtype:
        raise ValueError(f"input {name!r} must be {dtype}, got {host.dtype}")
    buffer = DeviceBuffer(host.shape, dtype)
    cuda_check(cudart.cudaMemcpyAsync(buffer.ptr, host.ctypes.data, host.nbytes,
                                      cudart.cudaMemcpyKind.cudaMemcpyHostToDevice, stream))
    return buffer.ptr, host.shape, (buffer, host)


class TensorRTRunner:
    device = "cuda"

    def __init__(self, payload: bytes):
        self.runtime = trt.Runtime(LOGGER)
        self.engine = self.runtime.deserialize_cuda_engine(payload)
        if self.engine is None:
            raise RuntimeError("TensorRT could not deserialize the engine (built by another TensorRT version or for "
                               "another GPU?); rebuild it on this machine")
        names = [self.engine.get_tensor_name(i) for i in range(self.engine.num_io_tensors)]
        self.inputs = [n for n in names if self.engine.get_tensor_mode(n) == trt.TensorIOMode.INPUT]
        self.outputs = [n for n in names if self.engine.get_tensor_mode(n) == trt.TensorIOMode.OUTPUT]
        self._local = threading.local()

    def _thread_state(self):
        """One execution context and one non-blocking stream per thread."""
        if not hasattr(self._local, "context"):
            self._local.context = self.engine.create_execution_context()
            self._local.stream = int(cuda_check(cudart.cudaStreamCreateWithFlags(cudart.cudaStreamNonBlocking)))
        return self._local.context, self._local.stream

    def run(self, feeds: dict) -> dict[str, torch.Tensor]:
        """Runs on this thread's stream and waits for it; outputs are CUDA tensors owning fresh device memory."""
        context, stream = self._thread_state()
        keep = []
        for name in self.inputs:
            if name not in feeds:
                raise ValueError(f"missing input {name!r} (inputs: {self.inputs})")
            dtype = np.dtype(_NUMPY_OF[self.engine.get_tensor_dtype(name)])
            ptr, shape, owner = _device_pointer(feeds[name], name, dtype, stream)
            keep.append(owner)
            if not context.set_input_shape(name, shape):
                low, _, high = self.engine.get_tensor_profile_shape(name, 0)
                raise ValueError(f"input {name!r} shape {shape} is outside the engine's profile {tuple(low)} .. "
                                 f"{tuple(high)}")
            context.set_tensor_address(name, ptr)
        unresolved = context.infer_shapes()
        if unresolved:
            raise RuntimeError(f"TensorRT could not resolve the shapes of {unresolved}")
        outputs = {}
        for name in self.outputs:
            buffer = DeviceBuffer(context.get_tensor_shape(name), _NUMPY_OF[self.engine.get_tensor_dtype(name)])
            context.set_tensor_address(name, buffer.ptr)
            outputs[name] = buffer
        if not context.execute_async_v3(stream):
            raise RuntimeError("TensorRT execute_async_v3 failed; see the messages above")
        cuda_check(cudart.cudaStreamSynchronize(stream))
        return {name: torch.as_tensor(buffer, device="cuda") for name, buffer in outputs.items()}


class TensorRTBackend:
    name = "tensorrt"

    def __init__(self):
        self.builder = trt.Builder(LOGGER)

    def create_network(self) -> ArrayKeeper:
        # 10.x needs the flag for strong typing; 11.x is always strongly typed and ignores it.
        return ArrayKeeper(self.builder.create_network(1 << int(trt.NetworkDefinitionCreationFlag.STRONGLY_TYPED)))

    def build(self, network, options: BuildOptions) -> bytes:
        config = self.builder.create_builder_config()
        config.set_memory_pool_limit(trt.MemoryPoolType.WORKSPACE, options.workspace_bytes)
        if not options.allow_tf32:
            config.clear_flag(trt.BuilderFlag.TF32)
        profile = self.builder.create_optimization_profile()
        low, opt, high = options.batch
        for i in range(network.num_inputs):
            tensor = network.get_input(i)
            shape = tuple(tensor.shape)
            if options.shapes and tensor.name in options.shapes:
                profile.set_shape(tensor.name, *options.shapes[tensor.name])
            elif shape[0] == -1:
                profile.set_shape(tensor.name, (low, *shape[1:]), (opt, *shape[1:]), (high, *shape[1:]))
        config.add_optimization_profile(profile)
        cache_path = Path(options.timing_cache) if options.timing_cache else None
        if cache_path is not None:
            blob = cache_path.read_bytes() if cache_path.exists() else b""
            config.set_timing_cache(config.create_timing_cache(blob), False)
        plan = self.builder.build_serialized_network(network.network, config)  # the arrays are alive until here
        if plan is None:
            raise RuntimeError("TensorRT could not build the engine; see the messages above")
        if cache_path is not None:
            write_bytes_atomic(cache_path, bytes(memoryview(config.get_timing_cache().serialize())))
        return bytes(plan)

    def load(self, payload: bytes) -> TensorRTRunner:
        return TensorRTRunner(payload)

    def describe(self) -> dict:
        return {"tensorrt_version": trt.__version__, "gpu": gpu_name()}
