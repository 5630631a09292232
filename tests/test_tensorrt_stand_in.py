"""The TensorRT backend's build, load and run code, executed on a CPU against a recording stand-in for `tensorrt`
and cuda-python (tests/trt_stand_in.py) that checks every call against the real API listings and signatures."""
from __future__ import annotations

import importlib
import sys
import threading

import numpy as np
import pytest

from trt_stand_in import StandInCudart, StandInTensorRT
from zoo.engine.backend_api import BuildOptions


@pytest.fixture
def stand_in(monkeypatch):
    """(stand-in tensorrt, stand-in cudart, the backend module imported against them)."""
    trt, cudart = StandInTensorRT(), StandInCudart()
    monkeypatch.setitem(sys.modules, "tensorrt", trt.module)
    monkeypatch.delitem(sys.modules, "zoo.engine.tensorrt.backend", raising=False)
    backend = importlib.import_module("zoo.engine.tensorrt.backend")
    monkeypatch.setattr(backend, "cudart", cudart)
    yield trt, cudart, backend
    sys.modules.pop("zoo.engine.tensorrt.backend", None)  # the next import sees the real (or no) tensorrt


def _engine(trt, backend, tmp_path, contexts=1, batch=(1, 2, 4)):
    tensorrt = backend.TensorRTBackend()
    net = tensorrt.create_network()
    x = net.add_input("input", trt.module.float32, (-1, 3))
    net.mark_output(x)
    options = BuildOptions("input", batch, 1 << 20, str(tmp_path / "timing.cache"), allow_tf32=False,
                           contexts=contexts)
    return tensorrt, tensorrt.build(net, options)


def test_build_makes_one_profile_per_context_and_updates_the_timing_cache(stand_in, tmp_path):
    trt, cudart, backend = stand_in
    (tmp_path / "timing.cache").write_bytes(b"old")
    _, plan = _engine(trt, backend, tmp_path, contexts=2)
    assert [c[2] for c in trt.calls_to("set_shape")] == [("input", (1, 3), (2, 3), (4, 3))] * 2
    assert len(trt.calls_to("add_optimization_profile")) == 2
    assert [c[2][0].name for c in trt.calls_to("clear_flag")] == ["TF32"]
    assert trt.calls_to("create_network")[0][2] == (1 << 0,)  # STRONGLY_TYPED is member 0 in the 11.4 listing
    assert (tmp_path / "timing.cache").read_bytes() == b"old+tuned"
    assert b'"profiles"' in plan


def test_run_computes_through_the_engine_and_enforces_the_profile(stand_in, tmp_path):
    trt, cudart, backend = stand_in
    tensorrt, plan = _engine(trt, backend, tmp_path)
    runner = tensorrt.load(plan)
    runner.output_device = "cpu"  # no CUDA torch here: outputs are copied device-to-host instead
    x = np.arange(9, dtype=np.float32).reshape(3, 3)
    out = runner.run({"input": x})
    np.testing.assert_array_equal(out["input:out"].numpy(), 2 * x + 1)
    out2 = runner.run({"input": x[:1] + 10})  # buffers are reused; the first result is the caller's, untouched
    np.testing.assert_array_equal(out["input:out"].numpy(), 2 * x + 1)
    np.testing.assert_array_equal(out2["input:out"].numpy(), 2 * (x[:1] + 10) + 1)
    assert len([c for c in cudart.calls if c[0] == "cudaMalloc"]) == 2  # once per tensor, not once per run
    with pytest.raises(ValueError, match=r"shape \(8, 3\) is outside the engine.s profile \(1, 3\) .. \(4, 3\)"):
        runner.run({"input": np.zeros((8, 3), np.float32)})
    with pytest.raises(ValueError, match="must be torch.float32"):
        runner.run({"input": np.zeros((2, 3), np.float64)})


def test_concurrent_threads_never_share_an_execution_context(stand_in, tmp_path):
    trt, cudart, backend = stand_in
    tensorrt, plan = _engine(trt, backend, tmp_path, contexts=2)
    runner = tensorrt.load(plan)
    runner.output_device = "cpu"
    results, errors = [], []

    def work(seed):
        try:
            for _ in range(3):
                x = np.full((2, 3), seed, np.float32)
                results.append((seed, runner.run({"input": x})["input:out"].numpy()))
        except Exception as e:  # pragma: no cover - reported below
            errors.append(e)

    threads = [threading.Thread(target=work, args=(i,)) for i in range(5)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors and not trt.overlap
    assert len(results) == 15 and all((y == 2 * seed + 1).all() for seed, y in results)
    assert sorted(c[2][0] for c in trt.calls_to("set_optimization_profile_async")) == [0, 1]


def test_cuda_array_interface_inputs_wait_for_their_stream(stand_in, tmp_path):
    trt, cudart, backend = stand_in
    tensorrt, plan = _engine(trt, backend, tmp_path)
    runner = tensorrt.load(plan)
    runner.output_device = "cpu"
    _, pointer = cudart.cudaMalloc(24)
    np.frombuffer((np.ctypeslib.as_array((np.ctypeslib.ctypes.c_float * 6).from_address(pointer))), np.float32)[:] = 1

    class Foreign:  # e.g. a CuPy array produced on another library's stream
        __cuda_array_interface__ = {"shape": (2, 3), "typestr": "<f4", "data": (pointer, False), "version": 3,
                                    "strides": None, "stream": 77}

    out = runner.run({"input": Foreign()})
    np.testing.assert_array_equal(out["input:out"].numpy(), np.full((2, 3), 3, np.float32))
    names = [c[0] for c in cudart.calls]
    record = names.index("cudaEventRecord")
    assert cudart.calls[record][1][1] == 77 and names[record + 1] == "cudaStreamWaitEvent"


def test_close_destroys_streams_events_and_memory(stand_in, tmp_path):
    trt, cudart, backend = stand_in
    tensorrt, plan = _engine(trt, backend, tmp_path, contexts=2)
    runner = tensorrt.load(plan)
    runner.output_device = "cpu"
    runner.run({"input": np.ones((2, 3), np.float32)})
    assert cudart.streams and cudart.memory and cudart.pinned
    runner.close()
    assert not cudart.streams and not cudart.events and not cudart.memory and not cudart.pinned


def test_the_stand_in_refuses_what_tensorrt_would(stand_in):
    trt, _, _ = stand_in
    assert not hasattr(trt.module.BuilderFlag, "FP16")  # removed in TensorRT 11
    builder = trt.module.Builder(trt.module.Logger(trt.module.Logger.WARNING))
    with pytest.raises(TypeError, match="matches no overload"):
        builder.create_network(flag=1)
    with pytest.raises(AttributeError, match="has no method Builder.build_engine"):
        builder.build_engine(None, None)
    config = builder.create_builder_config()
    with pytest.raises(AttributeError, match="has no property IBuilderConfig.int8_calibrator"):
        config.int8_calibrator = None


def test_output_types_include_bf16_and_fp8(stand_in):
    trt, _, backend = stand_in
    import torch
    assert backend.torch_dtype(trt.module.bfloat16) == torch.bfloat16
    assert backend.torch_dtype(trt.module.fp8) == torch.float8_e4m3fn
