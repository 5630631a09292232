"""ONNX Runtime behind the zoo's Runner interface: `OnnxRunner(model_bytes).run({"input": x}) -> {name: tensor}`.

A model file is untrusted input: before ONNX Runtime sees it, it must use only the standard ONNX domain (no custom
operator libraries) and keep every tensor inside the file (external data would make ONNX Runtime open other paths).

Tuned for the CPU it runs on:
- intra-op threads = the cores this process may really use (affinity mask and cgroup CPU quota, not the machine's
  count, which oversubscribes a container and makes ONNX Runtime's spinning threads wait on each other), divided
  among the processes that share them (`share_cores`: serve's workers);
- the model is prepared for the CPU once (`cpu_plan`: INT8 convolutions and matrix multiplies on integer kernels)
  and, with `cache_beside`, the graph ONNX Runtime optimised is kept beside the engine, so the next load skips the
  translation and the optimisation. The cache's name and contents carry a key (the engine payload's hash, ONNX
  Runtime's version, the plan's version, the CPU): another engine, another ONNX Runtime or another CPU never reads
  it, and a cache that is damaged or fails to load is rebuilt, never trusted;
- one session serves every batch size of the engine's range; outputs are allocated at their known shape and bound
  (I/O binding), so ONNX Runtime writes straight into the tensors handed back, and inputs are bound without a copy.
"""
from __future__ import annotations

import hashlib
import json
import math
import os
import tempfile
import threading
from pathlib import Path
from typing import Callable

import numpy as np
import torch

_STANDARD_DOMAINS = ("", "ai.onnx")
# Operator sets ONNX Runtime itself writes into a graph it optimised (fused and layout-transformed kernels, all
# built in; no operator library is ever loaded). Allowed in the cache only, which ONNX Runtime wrote.
_OPTIMISED_DOMAINS = _STANDARD_DOMAINS + ("com.microsoft", "com.microsoft.nchwc", "ai.onnx.ml")
CACHE_MAGIC = b"ZOO-ORT-CACHE 1\n"
PLAN_VERSION = "1"  # bump when cpu_plan changes what it writes: old caches then miss


class OnnxModelError(ValueError):
    pass


def check_self_contained(data: bytes, domains: tuple[str, ...] = _STANDARD_DOMAINS):
    """The parsed ModelProto, or OnnxModelError saying why it is refused. With other `domains` (the cache, which
    ONNX Runtime wrote and which imports every operator set it knows), the operators used are what is checked."""
    import onnx
    from google.protobuf.message import DecodeError
    try:
        model = onnx.load_model_from_string(data)
    except (DecodeError, ValueError, RuntimeError) as e:
        raise OnnxModelError(f"not a valid ONNX model ({type(e).__name__}: {e})") from None
    if domains == _STANDARD_DOMAINS:
        foreign = [o.domain for o in model.opset_import if o.domain not in domains]
    else:
        foreign = sorted({n.domain for n in _all_nodes(model.graph)} - set(domains))
    if foreign or model.functions:
        raise OnnxModelError(f"the ONNX model uses operator domains {foreign or 'with local functions'}; the zoo "
                             f"runs standard ONNX operators only")
    from .contained import external_tensor
    outside = external_tensor(model)  # whatever field holds it: initializers, attributes, sparse tensors, ...
    if outside is not None:
        raise OnnxModelError(f"the ONNX model keeps tensor {outside!r} in external files; the zoo loads "
                             "self-contained models only")
    return model


def _all_nodes(graph):
    for node in graph.node:
        yield node
        for attribute in node.attribute:
            for sub in ([attribute.g] if attribute.HasField("g") else []) + list(attribute.graphs):
                yield from _all_nodes(sub)


def available_cores() -> int:
    """Cores this process may use: its affinity mask, capped by a cgroup CPU quota (v2 `cpu.max`, v1 cfs)."""
    try:
        cores = len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        cores = os.cpu_count() or 1
    quota = _cgroup_quota()
    return max(1, min(cores, math.ceil(quota)) if quota else cores)


def _cgroup_quota(root: Path = Path("/sys/fs/cgroup")) -> float | None:
    """CPUs' worth of quota, or None when there is none (or it cannot be read)."""
    try:
        text = (root / "cpu.max").read_text().split()
        if text and text[0] != "max":
            return int(text[0]) / int(text[1])
        return None
    except (OSError, ValueError, IndexError):
        pass
    try:
        quota = int((root / "cpu" / "cpu.cfs_quota_us").read_text())
        period = int((root / "cpu" / "cpu.cfs_period_us").read_text())
        return quota / period if quota > 0 and period > 0 else None
    except (OSError, ValueError):
        return None


_PROCESSES_SHARING = 1  # processes running sessions side by side on these cores (serve's workers)


def share_cores(processes: int) -> None:
    """Each session made after this gets 1/processes of the available cores as its threads (at least one):
    serve's workers each run their own session, and more threads than cores only wait on each other."""
    global _PROCESSES_SHARING
    _PROCESSES_SHARING = max(1, processes)


def session_threads() -> int:
    return max(1, available_cores() // _PROCESSES_SHARING)


def cache_path(engine: Path, key: str) -> Path:
    """The optimised graph's file beside `engine`; the key is in the name, so engines never share one."""
    return engine.with_name(f"{engine.name}.ort-{key[:16]}.onnx")


class OnnxRunner:
    device = "cpu"
    backend_name = "onnx"  # what runs a reference engine handed to ONNX Runtime (bench labels its rows by it)

    def __init__(self, data: bytes, threads: int = 0, cache_beside: Path | None = None,
                 translate: Callable[[bytes], bytes] | None = None):
        """`data`: an ONNX model, or with `translate` an engine payload that translate(data) turns into one (done only
        when no valid cache exists). `cache_beside`: the engine file next to which the optimised graph is kept."""
        import onnxruntime as ort
        self.threads = threads or session_threads()
        self.cache_file, self.cache_state = None, "off"
        session = None
        if cache_beside is not None:
            key = self.cache_key(data, "translated" if translate else "onnx")
            self.cache_file = cache_path(Path(cache_beside), key)
            session = self._load_cache(key)
        if session is None:
            model = check_self_contained(translate(data) if translate else data)
            session = self._prepared_session(model)
        self.session = session
        self.input_names = [i.name for i in session.get_inputs()]
        self.input_types = {i.name: _NUMPY_TYPES.get(i.type) for i in session.get_inputs()}
        self.output_names = [o.name for o in session.get_outputs()]
        self.inputs, self.outputs = self.input_names, self.output_names  # as the TensorRT runner names them
        self.batch_range = _batch_range(session.get_modelmeta().custom_metadata_map)
        # outputs whose every dimension is fixed or the batch can be allocated before the run
        self._output_dims = {o.name: o.shape for o in session.get_outputs()}
        self._bindable = all(all(isinstance(d, int) or d == "batch" for d in dims)
                             for dims in self._output_dims.values())
        self._shapes: dict[tuple, dict[str, tuple]] = {}   # input shapes -> output shapes, learnt at the first run
        self._local = threading.local()                     # an I/O binding per thread (a binding is not shared)

    @staticmethod
    def cache_key(payload: bytes, kind: str) -> str:
        import onnxruntime as ort
        parts = [hashlib.sha256(payload).hexdigest(), kind, ort.__version__, PLAN_VERSION, _cpu_id()]
        return hashlib.sha256("|".join(parts).encode()).hexdigest()

    def _options(self, optimise: bool = True):
        import onnxruntime as ort
        options = ort.SessionOptions()
        options.log_severity_level = 3  # warnings about unused initializers are noise here
        options.intra_op_num_threads = self.threads
        options.inter_op_num_threads = 1
        options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
        # Idle pool threads sleep instead of spinning: with several runs at once (serve without batching) or other
        # work on the cores, spinning threads starve the ones with work (measured: 8x fewer requests/s).
        options.add_session_config_entry("session.intra_op.allow_spinning", "0")
        options.graph_optimization_level = (ort.GraphOptimizationLevel.ORT_ENABLE_ALL if optimise else
                                            ort.GraphOptimizationLevel.ORT_DISABLE_ALL)
        return options

    def _prepared_session(self, model):
        """A session on the model prepared for the CPU (cpu_plan); on the model as written if ONNX Runtime refuses
        the prepared one (a pattern the plan did not foresee must cost speed, never a failure)."""
        from .cpu_plan import prepare_for_cpu
        save = self.cache_file is not None
        try:
            prepared = prepare_for_cpu(model)
        except Exception:  # noqa: BLE001 - any surprise in the rewrite: run the model as written
            prepared = model
        if prepared is model:
            return self._session(model.SerializeToString(), save)
        try:
            return self._session(prepared.SerializeToString(), save)
        except Exception:  # noqa: BLE001
            return self._session(model.SerializeToString(), save)

    def _session(self, model_bytes: bytes, save_optimised: bool):
        import onnxruntime as ort
        options = self._options()
        if not save_optimised:
            return ort.InferenceSession(model_bytes, options, providers=["CPUExecutionProvider"])
        with tempfile.TemporaryDirectory(prefix="zoo-ort-") as folder:
            optimised = Path(folder) / "optimised.onnx"
            options.optimized_model_filepath = str(optimised)
            session = ort.InferenceSession(model_bytes, options, providers=["CPUExecutionProvider"])
            self._save_cache(optimised.read_bytes() if optimised.exists() else None)
        return session

    def _save_cache(self, optimised: bytes | None) -> None:
        from ..files import write_bytes_atomic
        if optimised is None:
            return
        header = json.dumps({"key": self.cache_key_value, "sha256": hashlib.sha256(optimised).hexdigest()})
        try:
            write_bytes_atomic(self.cache_file, CACHE_MAGIC, header.encode(), b"\n", optimised)
            self.cache_state = "rebuilt" if self.cache_state == "rebuilt" else "written"  # rebuilt: replaced a bad one
        except OSError:  # a read-only folder: run without a cache rather than fail
            self.cache_state = "not writable"

    def _load_cache(self, key: str):
        """A session from the cache when it is present, intact and made for this key; None otherwise."""
        import onnxruntime as ort
        self.cache_key_value = key
        try:
            blob = self.cache_file.read_bytes()
        except OSError:
            self.cache_state = "missing"
            return None
        self.cache_state = "rebuilt"
        if not blob.startswith(CACHE_MAGIC):
            return None
        header, _, body = blob[len(CACHE_MAGIC):].partition(b"\n")
        try:
            meta = json.loads(header)
        except ValueError:
            return None
        if not isinstance(meta, dict) or meta.get("key") != key or \
                meta.get("sha256") != hashlib.sha256(body).hexdigest():
            return None
        try:
            check_self_contained(body, _OPTIMISED_DOMAINS)
            # already optimised for this CPU: loading it again must not transform it a second time
            session = ort.InferenceSession(body, self._options(optimise=False), providers=["CPUExecutionProvider"])
        except Exception:  # whatever ONNX Runtime objects to: the cache is not used, and is written again
            return None
        self.cache_state = "used"
        return session

    def run(self, feeds: dict) -> dict[str, torch.Tensor]:
        missing = [n for n in self.input_names if n not in feeds]
        if missing:
            raise ValueError(f"missing input {missing[0]!r} (inputs: {self.input_names})")
        arrays = {n: _numpy(feeds[n], self.input_types[n]) for n in self.input_names}
        if self.batch_range:  # the optimization profile's range, as a TensorRT engine would enforce it
            low, high = self.batch_range
            for n, a in arrays.items():
                if a.ndim and not low <= a.shape[0] <= high:
                    raise ValueError(f"input {n!r} has batch {a.shape[0]}, outside the engine's optimization "
                                     f"profile {low}..{high}")
        shapes_key = tuple((n, a.shape, a.dtype.str) for n, a in arrays.items())
        known = self._shapes.get(shapes_key)
        if not self._bindable or known is None:
            values = self.session.run(self.output_names, arrays)
            if self._bindable:
                self._shapes[shapes_key] = {n: (v.shape, v.dtype) for n, v in zip(self.output_names, values)}
            return {n: torch.from_numpy(_contiguous(v)) for n, v in zip(self.output_names, values)}
        return self._run_bound(arrays, known)

    def _run_bound(self, arrays: dict, shapes: dict) -> dict[str, torch.Tensor]:
        """Inputs bound in place, outputs allocated here at their known shape: nothing is copied after the run."""
        binding = getattr(self._local, "binding", None)
        if binding is None:
            binding = self._local.binding = self.session.io_binding()
        outputs = {n: np.empty(shape, dtype) for n, (shape, dtype) in shapes.items()}
        try:
            for name, array in arrays.items():
                binding.bind_cpu_input(name, array)
            for name, out in outputs.items():
                binding.bind_output(name, "cpu", 0, out.dtype, out.shape, out.ctypes.data)
            self.session.run_with_iobinding(binding)
        finally:
            binding.clear_binding_inputs()
            binding.clear_binding_outputs()
        return {n: torch.from_numpy(outputs[n]) for n in self.output_names}


_NUMPY_TYPES = {"tensor(float)": np.float32, "tensor(float16)": np.float16, "tensor(double)": np.float64,
                "tensor(int32)": np.int32, "tensor(int64)": np.int64, "tensor(int8)": np.int8,
                "tensor(uint8)": np.uint8, "tensor(bool)": np.bool_}


def _cpu_id() -> str:
    """What an optimised graph may depend on: the machine type and the CPU's instruction set (its flags line)."""
    import platform
    flags = ""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith(("flags", "Features")):
                flags = line
                break
    except OSError:
        pass
    return f"{platform.machine()}:{hashlib.sha256(flags.encode()).hexdigest()[:16]}"


def _batch_range(metadata: dict) -> tuple[int, int] | None:
    """(min, max) from the writer's `batch_range` metadata ("min:opt:max"); None when absent or unreadable."""
    try:
        low, _, high = (int(v) for v in metadata["batch_range"].split(":"))
    except (KeyError, ValueError):
        return None
    return low, high


def _numpy(value, dtype=None) -> np.ndarray:
    """A contiguous array of the session's input type (an engine whose CPU plan computes in FP32 takes the FP16
    input a TensorRT engine of the same precision takes, converted here)."""
    if isinstance(value, torch.Tensor):
        value = value.detach().cpu().numpy()
    array = np.asarray(value)
    if dtype is not None and array.dtype != dtype and np.issubdtype(array.dtype, np.floating) \
            and np.issubdtype(dtype, np.floating):
        array = array.astype(dtype)
    return _contiguous(array)


def _contiguous(array: np.ndarray) -> np.ndarray:
    """np.ascontiguousarray would turn a rank-0 array into rank 1."""
    return array if array.flags.c_contiguous else array.copy(order="C")
