"""The TensorRT backend (10.x and 11.x): strongly typed networks, engines with optimization profiles, and a runner.

Only imported where `tensorrt` and a GPU exist. Written against the current API only: enum members by name (their
integer values differ between 10 and 11), `build_serialized_network`, named I/O tensors with `set_input_shape` /
`set_tensor_address` / `execute_async_v3`, memory and streams through cuda-python, never the legacy default stream.

Concurrency: TensorRT requires each execution context in concurrent use to have its own optimization profile
(NvInferRuntime.h). An engine is built with `BuildOptions.contexts` identical profiles, and the runner keeps one
slot per profile: an execution context bound to that profile, its own non-blocking stream, and its device buffers
(and pinned host staging memory for numpy inputs), allocated once and grown when a larger batch arrives. A thread
takes a free slot for the length of one `run`; more threads than slots wait, so a context is never shared.
"""
from __future__ import annotations

import ctypes
import queue
import threading
from pathlib import Path

import numpy as np
import tensorrt as trt
import torch
from cuda.bindings import runtime as cudart

from ..backend_api import ArrayKeeper, BuildOptions
from ..files import write_bytes_atomic

LOGGER = trt.Logger(trt.Logger.WARNING)


def _dtype_table() -> dict:
    """TensorRT data type -> torch dtype, for every type an I/O tensor can have (bf16 and fp8 included)."""
    table = {trt.float32: torch.float32, trt.float16: torch.float16, trt.int8: torch.int8, trt.int32: torch.int32,
             trt.int64: torch.int64, trt.bool: torch.bool, trt.uint8: torch.uint8}
    for name, dtype in (("bfloat16", torch.bfloat16), ("fp8", torch.float8_e4m3fn)):
        if hasattr(trt, name):
            table[getattr(trt, name)] = dtype
    return table


_TORCH_OF = _dtype_table()


def torch_dtype(trt_dtype) -> torch.dtype:
    try:
        return _TORCH_OF[trt_dtype]
    except KeyError:
        raise ValueError(f"I/O tensors of type {trt_dtype} are not supported by the runner") from None


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


class _Memory:
    """A growable cudaMalloc'd (or, with pinned=True, cudaMallocHost'd) block, freed when closed."""

    def __init__(self, pinned: bool = False):
        self.pinned, self.ptr, self.nbytes = pinned, 0, 0

    def at_least(self, nbytes: int) -> int:
        if nbytes > self.nbytes:
            self.close()
            size = max(nbytes, 1)
            self.ptr = int(cuda_check(cudart.cudaMallocHost(size) if self.pinned else cudart.cudaMalloc(size)))
            self.nbytes = size
        return self.ptr

    def close(self) -> None:
        if self.ptr:
            cuda_check(cudart.cudaFreeHost(self.ptr) if self.pinned else cudart.cudaFree(self.ptr))
            self.ptr, self.nbytes = 0, 0


class _Slot:
    """One execution context bound to optimization profile `index`, with its stream and preallocated memory."""

    def __init__(self, engine, index: int):
        self.index = index
        self.stream = int(cuda_check(cudart.cudaStreamCreateWithFlags(cudart.cudaStreamNonBlocking)))
        self.event = int(cuda_check(cudart.cudaEventCreateWithFlags(cudart.cudaEventDisableTiming)))
        self.context = engine.create_execution_context()
        if not self.context.set_optimization_profile_async(index, self.stream):
            raise RuntimeError(f"TensorRT refused optimization profile {index} for a new execution context")
        self.device: dict[str, _Memory] = {}
        self.host: dict[str, _Memory] = {}

    def device_memory(self, name: str, nbytes: int) -> int:
        return self.device.setdefault(name, _Memory()).at_least(nbytes)

    def host_memory(self, name: str, nbytes: int) -> int:
        return self.host.setdefault(name, _Memory(pinned=True)).at_least(nbytes)

    def close(self) -> None:
        for memory in (*self.device.values(), *self.host.values()):
            memory.close()
        if self.event:
            cuda_check(cudart.cudaEventDestroy(self.event))
            self.event = 0
        if self.stream:
            cuda_check(cudart.cudaStreamDestroy(self.stream))
            self.stream = 0


def _contiguous_strides(shape, itemsize: int) -> tuple:
    return tuple(int(np.prod(shape[i + 1:], dtype=np.int64)) * itemsize for i in range(len(shape)))


class TensorRTRunner:
    device = "cuda"
    output_device = "cuda"  # where outputs are returned (a torch device)

    def __init__(self, payload: bytes):
        self.runtime = trt.Runtime(LOGGER)
        self.engine = self.runtime.deserialize_cuda_engine(payload)
        if self.engine is None:
            raise RuntimeError("TensorRT could not deserialize the engine (built by another TensorRT version or for "
                               "another GPU?); rebuild it on this machine")
        names = [self.engine.get_tensor_name(i) for i in range(self.engine.num_io_tensors)]
        self.inputs = [n for n in names if self.engine.get_tensor_mode(n) == trt.TensorIOMode.INPUT]
        self.outputs = [n for n in names if self.engine.get_tensor_mode(n) == trt.TensorIOMode.OUTPUT]
        self.dtypes = {n: torch_dtype(self.engine.get_tensor_dtype(n)) for n in names}
        self._free: queue.Queue[_Slot] = queue.Queue()
        self._slots: list[_Slot] = []
        self._lock = threading.Lock()

    # --- slots: one per optimization profile, created on first use
    def _take_slot(self) -> _Slot:
        with self._lock:
            if self._free.empty() and len(self._slots) < self.engine.num_optimization_profiles:
                slot = _Slot(self.engine, len(self._slots))
                self._slots.append(slot)
                return slot
        return self._free.get()  # every profile is in use: wait for one

    def close(self) -> None:
        """Free every stream and buffer (also done when the runner is garbage collected)."""
        with self._lock:
            for slot in self._slots:
                slot.close()
            self._slots.clear()

    def __del__(self):
        try:
            self.close()
        except Exception:  # interpreter shutdown: cuda-python may already be gone
            pass

    # --- inputs
    def _bind_input(self, slot: _Slot, name: str, value) -> None:
        """Point the context at `value` (torch CUDA tensor, any __cuda_array_interface__ object, or host array),
        after making the slot's stream wait for the stream that produced it."""
        want = self.dtypes[name]
        if isinstance(value, torch.Tensor) and value.is_cuda:
            if value.dtype != want:
                raise ValueError(f"input {name!r} must be {want}, got {value.dtype}")
            if not value.is_contiguous():
                raise ValueError(f"input {name!r} must be C-contiguous")
            self._wait_for(slot, torch.cuda.current_stream(value.device).cuda_stream)
            ptr, shape = value.data_ptr(), tuple(value.shape)
        elif hasattr(value, "__cuda_array_interface__"):
            cai = value.__cuda_array_interface__
            got = np.dtype(cai["typestr"])
            if torch.empty((), dtype=want).numpy().dtype != got:
                raise ValueError(f"input {name!r} must be {want}, got {got}")
            shape = tuple(cai["shape"])
            if cai.get("strides") not in (None, ()) and tuple(cai["strides"]) != _contiguous_strides(shape,
                                                                                                    got.itemsize):
                raise ValueError(f"input {name!r} must be C-contiguous")
            # __cuda_array_interface__ v3: no "stream" (or None) means no synchronisation is needed; 1 is the legacy
            # default stream, 2 the per-thread default stream, anything else a stream handle.
            stream = cai.get("stream")
            if stream:
                self._wait_for(slot, int(stream))
            ptr = int(cai["data"][0])
        else:
            host = np.ascontiguousarray(value)
            if torch.from_numpy(host[:0].copy()).dtype != want:
                raise ValueError(f"input {name!r} must be {want}, got {host.dtype}")
            shape = host.shape
            staging = slot.host_memory(name, host.nbytes)  # pinned: the copy below is truly asynchronous
            ctypes.memmove(staging, host.ctypes.data, host.nbytes)
            ptr = slot.device_memory(name, host.nbytes)
            cuda_check(cudart.cudaMemcpyAsync(ptr, staging, host.nbytes,
                                              cudart.cudaMemcpyKind.cudaMemcpyHostToDevice, slot.stream))
        if not slot.context.set_input_shape(name, shape):
            low, _, high = self.engine.get_tensor_profile_shape(name, slot.index)
            raise ValueError(f"input {name!r} shape {shape} is outside the engine's profile {tuple(low)} .. "
                             f"{tuple(high)}")
        slot.context.set_tensor_address(name, ptr)

    @staticmethod
    def _wait_for(slot: _Slot, producer: int) -> None:
        cuda_check(cudart.cudaEventRecord(slot.event, producer))
        cuda_check(cudart.cudaStreamWaitEvent(slot.stream, slot.event, 0))

    # --- running
    def run(self, feeds: dict) -> dict[str, torch.Tensor]:
        """Runs on a free slot's stream and waits for it; outputs are fresh tensors the caller owns."""
        for name in self.inputs:
            if name not in feeds:
                raise ValueError(f"missing input {name!r} (inputs: {self.inputs})")
        slot = self._take_slot()
        try:
            return self._run(slot, feeds)
        finally:
            self._free.put(slot)

    def _run(self, slot: _Slot, feeds: dict) -> dict[str, torch.Tensor]:
        for name in self.inputs:
            self._bind_input(slot, name, feeds[name])
        unresolved = slot.context.infer_shapes()
        if unresolved:
            raise RuntimeError(f"TensorRT could not resolve the shapes of {unresolved}")
        shapes = {}
        for name in self.outputs:
            shapes[name] = tuple(slot.context.get_tensor_shape(name))
            nbytes = int(np.prod(shapes[name], dtype=np.int64)) * torch.empty((), dtype=self.dtypes[name]).element_size()
            slot.context.set_tensor_address(name, slot.device_memory(name, nbytes))
        if not slot.context.execute_async_v3(slot.stream):
            raise RuntimeError("TensorRT execute_async_v3 failed; see the messages above")
        results = {}
        for name in self.outputs:  # copied out of the slot's buffers, which the next run reuses
            out = torch.empty(shapes[name], dtype=self.dtypes[name], device=self.output_device)
            kind = cudart.cudaMemcpyKind.cudaMemcpyDeviceToDevice if out.is_cuda else \
                cudart.cudaMemcpyKind.cudaMemcpyDeviceToHost
            cuda_check(cudart.cudaMemcpyAsync(out.data_ptr(), slot.device[name].ptr,
                                              out.numel() * out.element_size(), kind, slot.stream))
            results[name] = out
        cuda_check(cudart.cudaStreamSynchronize(slot.stream))
        return results


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
        low, opt, high = options.batch
        for _ in range(max(1, options.contexts)):  # one identical profile per concurrent execution context
            profile = self.builder.create_optimization_profile()
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
            write_bytes_atomic(cache_path, bytes(config.get_timing_cache().serialize()))
        return bytes(plan)

    def load(self, payload: bytes) -> TensorRTRunner:
        return TensorRTRunner(payload)

    def describe(self) -> dict:
        return {"tensorrt_version": trt.__version__, "gpu": gpu_name()}
