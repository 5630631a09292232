"""A recording stand-in for `tensorrt` and cuda-python's `cuda.bindings.runtime`, so that the TensorRT backend's
build, load and run code executes on a CPU in CI.

Every attribute the backend touches is checked against the real API:
- `tensorrt`: classes, methods, properties and enum members must exist in BOTH listings of tests/data/trt-api
  (TensorRT 10.16 and 11.4), a call's arguments must bind to one of the method's overloads in both (parameter
  names, count, required ones), a property set must not be read-only, and enums hold only the members both
  versions have (so `BuilderFlag.FP16`, gone in 11, does not exist here).
- cuda-python: every function called must exist in the installed `cuda.bindings.runtime` and its arguments must
  bind to that function's real signature.

Behind the checks is a tiny simulated GPU: "device" memory is host memory (ctypes buffers), copies are memmoves, a
built engine is JSON describing its inputs, outputs and optimization profiles, and running it computes
`output = 2 * input + 1` (float32) from the addresses the context was given. Streams, events and allocations are
tracked so that tests can check they are released.
"""
from __future__ import annotations

import ctypes
import inspect
import itertools
import json
import threading
import time
import types

import numpy as np
from cuda.bindings import runtime as real_cudart

from test_conformance import LISTINGS

DTYPE_ALIASES = {"float32": "FLOAT", "float16": "HALF", "bfloat16": "BF16", "int8": "INT8", "int32": "INT32",
                 "int64": "INT64", "bool": "BOOL", "uint8": "UINT8", "fp8": "FP8"}
SEVERITIES = ("INTERNAL_ERROR", "ERROR", "WARNING", "INFO", "VERBOSE")  # ILogger.Severity (nested: not listed)


class EnumMember:
    def __init__(self, enum: str, name: str, value: int):
        self.enum, self.name, self.value = enum, name, value

    def __int__(self):
        return self.value

    def __repr__(self):
        return f"<{self.enum}.{self.name}>"


class StandInTensorRT:
    """`module` is the stand-in `tensorrt`; `calls` records (class, member, args, kwargs) in order."""

    def __init__(self, compute=lambda x: 2 * x + 1):
        self.calls: list[tuple] = []
        self.compute = compute
        self.busy: set[int] = set()        # execution contexts inside execute_async_v3 right now
        self.overlap = False               # set when one context was entered twice at once
        self.misaligned: list[tuple] = []  # (tensor, address) given to set_tensor_address off a 256-byte boundary
        self.lock = threading.Lock()
        module = types.ModuleType("tensorrt")
        module.__version__ = "11.4.0.106"
        for enum in set.intersection(*(set(lst.enums) for lst in LISTINGS.values())):
            members = [m for m in LISTINGS["11.4.0.106"].enums[enum]
                       if all(m in lst.enums[enum] for lst in LISTINGS.values())]
            setattr(module, enum, types.SimpleNamespace(**{m: EnumMember(enum, m, LISTINGS["11.4.0.106"].enums[enum]
                                                                         .index(m)) for m in members}))
        for alias, member in DTYPE_ALIASES.items():
            setattr(module, alias, getattr(module.DataType, member))
        for cls in ("Builder", "Runtime", "Logger"):
            setattr(module, cls, self._constructor(cls))
        for severity in SEVERITIES:
            setattr(module.Logger, severity, EnumMember("ILogger.Severity", severity, SEVERITIES.index(severity)))
        self.module = module

    # --- the API checks
    def check_call(self, cls: str, member: str, args: tuple, kwargs: dict) -> None:
        for version, lst in LISTINGS.items():
            found = lst.lookup(cls, member)
            if found is None or found[0] != "method":
                raise AttributeError(f"TensorRT {version} has no method {cls}.{member}")
            method = found[1]
            if method.unknown:
                continue
            if not any(_binds(overload, args, kwargs) for overload in method.overloads):
                raise TypeError(f"{cls}.{member}{_show(args, kwargs)} matches no overload of TensorRT {version}: "
                                f"{method.param_lists()}")
        for value in (*args, *kwargs.values()):
            if isinstance(value, EnumMember) and value.enum != "ILogger.Severity":
                for version, lst in LISTINGS.items():
                    if value.name not in lst.enums.get(value.enum, []):
                        raise AttributeError(f"TensorRT {version} has no {value.enum}.{value.name}")
        self.calls.append((cls, member, args, kwargs))

    def check_property(self, cls: str, name: str, setting: bool) -> None:
        for version, lst in LISTINGS.items():
            found = lst.lookup(cls, name)
            if found is None or found[0] != "property":
                raise AttributeError(f"TensorRT {version} has no property {cls}.{name}")
            if setting and found[1]:
                raise AttributeError(f"TensorRT {version}: {cls}.{name} is read-only")

    def _constructor(self, cls: str):
        stand_in = self

        class Constructor:
            def __new__(_, *args, **kwargs):
                stand_in.check_call(cls, "__init__", args, kwargs)
                return Obj(stand_in, cls)
        Constructor.__name__ = cls
        return Constructor

    def calls_to(self, member: str) -> list[tuple]:
        return [c for c in self.calls if c[1] == member]


def _binds(overload: list[tuple[str, bool]], args: tuple, kwargs: dict) -> bool:
    names = [name for name, _ in overload]
    if len(args) > len(names) or any(k not in names[len(args):] for k in kwargs):
        return False
    given = set(names[:len(args)]) | set(kwargs)
    return all(name in given or has_default for name, has_default in overload)


def _show(args, kwargs) -> str:
    return "(" + ", ".join([*map(repr, args), *(f"{k}={v!r}" for k, v in kwargs.items())]) + ")"


class Obj:
    """An instance of TensorRT class `cls`: members checked against the listings, behaviour from BEHAVIOUR."""

    def __init__(self, stand_in: StandInTensorRT, cls: str, **state):
        object.__setattr__(self, "_stand_in", stand_in)
        object.__setattr__(self, "_cls", cls)
        object.__setattr__(self, "_state", dict(state))

    def __getattr__(self, name: str):
        if name.startswith("__"):
            raise AttributeError(name)
        found = LISTINGS["11.4.0.106"].lookup(self._cls, name)
        if found is not None and found[0] == "property":
            self._stand_in.check_property(self._cls, name, setting=False)
            return self._state[name]
        behaviour = BEHAVIOUR.get((self._cls, name))

        def call(*args, **kwargs):
            self._stand_in.check_call(self._cls, name, args, kwargs)
            if behaviour is None:
                raise NotImplementedError(f"the stand-in has no behaviour for {self._cls}.{name}")
            return behaviour(self, *args, **kwargs)
        return call

    def __setattr__(self, name: str, value):
        self._stand_in.check_property(self._cls, name, setting=True)
        self._state[name] = value

    def __bytes__(self):  # IHostMemory's buffer
        assert self._cls == "IHostMemory"
        return self._state["data"]


# ----------------------------------------------------------------------------------------------------------------
# behaviour: just enough of TensorRT for the backend's code paths


def _add_input(net, name, dtype, shape):
    tensor = Obj(net._stand_in, "ITensor", name=name, shape=tuple(shape), dtype=dtype)
    net._state["inputs"].append(tensor)
    net._state["num_inputs"] = len(net._state["inputs"])
    return tensor


def _mark_output(net, tensor):
    net._state["outputs"].append(tensor)


def _build(builder, network, config):
    assert isinstance(network, Obj) and network._cls == "INetworkDefinition", "pass the network itself"
    plan = {"inputs": [{"name": t._state["name"], "shape": list(t._state["shape"]), "dtype": t._state["dtype"].name}
                       for t in network._state["inputs"]],
            "outputs": [t._state["name"] + ":out" if t in network._state["inputs"] else t._state["name"]
                        for t in network._state["outputs"]],
            "profiles": config._state["profiles"]}
    return Obj(builder._stand_in, "IHostMemory", data=json.dumps(plan).encode(), nbytes=0)


def _deserialize(runtime, serialized_engine):
    plan = json.loads(bytes(serialized_engine))
    names = [i["name"] for i in plan["inputs"]] + plan["outputs"]
    return Obj(runtime._stand_in, "ICudaEngine", plan=plan, names=names, num_io_tensors=len(names),
               num_optimization_profiles=len(plan["profiles"]))


def _tensor_dtype(engine, name):
    """The type the input was declared with (outputs: the input's, as the stand-in engine computes in it)."""
    inputs = engine._state["plan"]["inputs"]
    declared = next((i["dtype"] for i in inputs if i["name"] == name), inputs[0]["dtype"])
    return getattr(engine._stand_in.module.DataType, DTYPE_ALIASES.get(declared, declared))


def _tensor_mode(engine, name):
    modes = engine._stand_in.module.TensorIOMode
    return modes.INPUT if name in [i["name"] for i in engine._state["plan"]["inputs"]] else modes.OUTPUT


def _context(engine, *args, **kwargs):
    return Obj(engine._stand_in, "IExecutionContext", engine=engine, profile=None, shapes={}, addresses={},
               id=next(_IDS))


def _set_profile(context, profile_index, stream_handle):
    assert 0 <= profile_index < context._state["engine"]._state["num_optimization_profiles"]
    context._state["profile"] = profile_index
    return True


def _set_input_shape(context, name, shape):
    low, _, high = context._state["engine"]._state["plan"]["profiles"][context._state["profile"]][name]
    if len(shape) != len(low) or any(not lo <= s <= hi for lo, s, hi in zip(low, shape, high)):
        return False
    context._state["shapes"][name] = tuple(shape)
    return True


def _execute(context, stream_handle):
    stand_in = context._stand_in
    with stand_in.lock:
        if context._state["id"] in stand_in.busy:
            stand_in.overlap = True
        stand_in.busy.add(context._state["id"])
    time.sleep(0.01)  # let other threads run, so sharing a context would show
    plan = context._state["engine"]._state["plan"]
    (source,), (target,) = [i["name"] for i in plan["inputs"]], plan["outputs"]
    shape = context._state["shapes"][source]
    count = int(np.prod(shape))
    x = np.frombuffer((ctypes.c_float * count).from_address(context._state["addresses"][source]), np.float32)
    y = np.frombuffer((ctypes.c_float * count).from_address(context._state["addresses"][target]), np.float32)
    y[:] = stand_in.compute(x)
    with stand_in.lock:
        stand_in.busy.discard(context._state["id"])
    return True


def _set_address(context, name, memory):
    """As TensorRT: False for a name that is no I/O tensor of the engine; a pointer must be 256-byte aligned
    (IExecutionContext::setTensorAddress), which the stand-in records as a violation, as TensorRT's errors would."""
    if name not in context._state["engine"]._state["names"]:
        return False
    if memory % 256:
        context._stand_in.misaligned.append((name, memory))
    context._state["addresses"][name] = memory
    return True


_IDS = itertools.count()

BEHAVIOUR = {
    ("Builder", "create_network"): lambda b, flags=0: Obj(b._stand_in, "INetworkDefinition", inputs=[], outputs=[],
                                                          num_inputs=0),
    ("Builder", "create_builder_config"): lambda b: Obj(b._stand_in, "IBuilderConfig", profiles=[], cache=None),
    ("Builder", "create_optimization_profile"): lambda b: Obj(b._stand_in, "IOptimizationProfile", shapes={}),
    ("Builder", "build_serialized_network"): _build,
    ("INetworkDefinition", "add_input"): _add_input,
    ("INetworkDefinition", "mark_output"): _mark_output,
    ("INetworkDefinition", "get_input"): lambda n, index: n._state["inputs"][index],
    ("IOptimizationProfile", "set_shape"): lambda p, input, min, opt, max: p._state["shapes"].update(
        {input: [list(min), list(opt), list(max)]}),
    ("IBuilderConfig", "set_memory_pool_limit"): lambda c, pool, pool_size: None,
    ("IBuilderConfig", "clear_flag"): lambda c, flag: None,
    ("IBuilderConfig", "add_optimization_profile"): lambda c, profile: c._state["profiles"].append(
        profile._state["shapes"]) or len(c._state["profiles"]) - 1,
    ("IBuilderConfig", "create_timing_cache"): lambda c, serialized_timing_cache: Obj(
        c._stand_in, "ITimingCache", blob=bytes(serialized_timing_cache) + b"+tuned"),
    ("IBuilderConfig", "set_timing_cache"): lambda c, cache, ignore_mismatch: c._state.update(cache=cache) or True,
    ("IBuilderConfig", "get_timing_cache"): lambda c: c._state["cache"],
    ("ITimingCache", "serialize"): lambda t: Obj(t._stand_in, "IHostMemory", data=t._state["blob"], nbytes=0),
    ("Runtime", "deserialize_cuda_engine"): _deserialize,
    ("ICudaEngine", "get_tensor_name"): lambda e, index: e._state["names"][index],
    ("ICudaEngine", "get_tensor_mode"): _tensor_mode,
    ("ICudaEngine", "get_tensor_dtype"): _tensor_dtype,
    ("ICudaEngine", "get_tensor_profile_shape"): lambda e, name, profile_index: e._state["plan"]["profiles"][
        profile_index][name],
    ("ICudaEngine", "create_execution_context"): _context,
    ("IExecutionContext", "set_optimization_profile_async"): _set_profile,
    ("IExecutionContext", "set_input_shape"): _set_input_shape,
    ("IExecutionContext", "set_tensor_address"): _set_address,
    ("IExecutionContext", "infer_shapes"): lambda c: [],
    ("IExecutionContext", "get_tensor_shape"): lambda c, name: next(iter(c._state["shapes"].values())),
    ("IExecutionContext", "execute_async_v3"): _execute,
}


# ----------------------------------------------------------------------------------------------------------------
# cuda-python's runtime, checked against the installed module's signatures


class StandInCudart:
    """The functions of `cuda.bindings.runtime` the backend uses, on host memory; constants are the real ones."""

    cudaError_t = real_cudart.cudaError_t
    cudaMemcpyKind = real_cudart.cudaMemcpyKind
    cudaStreamNonBlocking = real_cudart.cudaStreamNonBlocking
    cudaEventDisableTiming = real_cudart.cudaEventDisableTiming

    def __init__(self):
        self.calls: list[tuple] = []
        self.memory: dict[int, ctypes.Array] = {}   # device allocations
        self.pinned: dict[int, ctypes.Array] = {}
        self.streams: set[int] = set()
        self.events: set[int] = set()
        self._handles = itertools.count(1000)
        self.ok = real_cudart.cudaError_t.cudaSuccess

    def __getattribute__(self, name: str):
        value = object.__getattribute__(self, name)
        if name.startswith("cuda") and callable(value) and not isinstance(value, type):
            real = getattr(real_cudart, name)  # AttributeError: cuda-python has no such function
            signature = inspect.signature(real)

            def checked(*args, **kwargs):
                signature.bind(*args, **kwargs)  # TypeError when the arguments do not fit the real function
                self.calls.append((name, args))
                return value(*args, **kwargs)
            return checked
        return value

    def _allocate(self, table, size):
        """Aligned to 256 bytes, as cudaMalloc's allocations are."""
        buffer = (ctypes.c_uint8 * (size + 256))()
        address = -(-ctypes.addressof(buffer) // 256) * 256
        table[address] = buffer
        return self.ok, address

    def cudaMalloc(self, size):
        return self._allocate(self.memory, size)

    def cudaMallocHost(self, size):
        return self._allocate(self.pinned, size)

    def cudaFree(self, devPtr):
        del self.memory[devPtr]
        return (self.ok,)

    def cudaFreeHost(self, ptr):
        del self.pinned[ptr]
        return (self.ok,)

    def cudaMemcpyAsync(self, dst, src, count, kind, stream):
        assert stream in self.streams, "copies run on the runner's own stream"
        ctypes.memmove(dst, src, count)
        return (self.ok,)

    def cudaStreamCreateWithFlags(self, flags):
        handle = next(self._handles)
        self.streams.add(handle)
        return self.ok, handle

    def cudaStreamDestroy(self, stream):
        self.streams.remove(stream)
        return (self.ok,)

    def cudaStreamSynchronize(self, stream):
        return (self.ok,)

    def cudaEventCreateWithFlags(self, flags):
        handle = next(self._handles)
        self.events.add(handle)
        return self.ok, handle

    def cudaEventDestroy(self, event):
        self.events.remove(event)
        return (self.ok,)

    def cudaEventRecord(self, event, stream):
        return (self.ok,)

    def cudaStreamWaitEvent(self, stream, event, flags):
        return (self.ok,)

    def cudaGetDeviceProperties(self, device):
        return self.ok, types.SimpleNamespace(name=b"Stand-in GPU\x00")

    def cudaGetErrorName(self, error):
        return self.ok, b"cudaErrorStandIn"
