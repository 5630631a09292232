"""Checks that a mutation audit found untested: each test fails when the check it names is removed or inverted."""
from __future__ import annotations

import argparse

import pytest

from wts.weight_map import WeightMap
from zoo.engine import engines
from zoo.engine.backends import ReferenceBackend
from zoo.engine.calibration import CalibrationCache
from zoo.engine.engine_file import EngineHeader, write_engine
from zoo.engine.model import state_dict_arrays
from layers.precision import Precision
from zoo.engine.quantization import calibrate, load_cache, sensitivity
from zoo.engine.engines import open_engine
from zoo.engine.errors import UserError
from zoo.engine.flags import parse_batch
from zoo.engine.networks import define_network
from zoo.lenet.model import LeNetModel


def test_a_calibration_cache_of_another_variant_is_refused(tmp_path):
    CalibrationCache("resnet", "resnet34", "max", 1, (3, 64, 64), {"input": 0.1}).save(tmp_path / "r.calib")
    with pytest.raises(ValueError, match="made for resnet variant 'resnet34', not 'resnet18'"):
        load_cache(tmp_path / "r.calib", "resnet", "resnet18")
    assert load_cache(tmp_path / "r.calib", "resnet", "resnet34").scales == {"input": pytest.approx(0.1)}


@pytest.mark.parametrize("text, ok", [("1:8:16", True), ("8", True), ("2:1:4", False), ("1:8:4", False),
                                      ("0:1:1", False), ("1:2", False)])
def test_batch_must_be_min_le_opt_le_max(text, ok):
    if ok:
        low, opt, high = parse_batch(text)
        assert low <= opt <= high
    else:
        with pytest.raises(argparse.ArgumentTypeError, match="MIN <= OPT <= MAX"):
            parse_batch(text)


def test_sensitivity_ranks_the_worst_layer_first():
    """One layer's input scale made 1000x too large quantizes it to nothing: it must lead the ranking, and the
    ranking is by output SNR, ascending."""
    model = LeNetModel()
    module = model.random_module(None, seed=0)
    weights = WeightMap(state_dict_arrays(module), "random")
    config = model.config_from_weights(weights, None)
    x = model.sample_input(config, 2)
    define = lambda backend, precision: define_network(model, backend, weights, config, precision)  # noqa: E731
    scales, _ = calibrate(define, ReferenceBackend(), lambda: [x], "input", "max", 99.99, 2, log=lambda m: None)
    probe = Precision("int8", scales)
    define(ReferenceBackend(), probe)
    layer, tensor = probe.seen[1]
    scales = {**scales, tensor: scales[tensor] * 1000}
    net, outputs = define(ReferenceBackend(), Precision("fp32"))
    reference = ReferenceBackend().runner_for(net).run({"input": x})[outputs[0]]
    ranking = sensitivity(define, scales, x, "input", reference, log=lambda m: None)
    assert ranking[0][0] == layer
    snrs = [snr for _, snr in ranking]
    assert snrs == sorted(snrs) and snrs[0] < snrs[-1]


class _FakeTensorRT:
    name = "tensorrt"

    def __init__(self, version="10.16.1", gpu="NVIDIA H200"):
        self.version, self.gpu = version, gpu

    def describe(self):
        return {"tensorrt_version": self.version, "gpu": self.gpu}

    def load(self, payload):
        return argparse.Namespace(device="cuda", payload=payload)


@pytest.mark.parametrize("built_with, ok", [(("10.16.1", "NVIDIA H200"), True), (("10.9.0", "NVIDIA H200"), False),
                                            (("10.16.1", "NVIDIA A100"), False)])
def test_a_tensorrt_engine_is_checked_against_this_machines_tensorrt_and_gpu(tmp_path, monkeypatch, built_with, ok):
    monkeypatch.setattr(engines, "choose_backend", lambda name: _FakeTensorRT())
    header = EngineHeader("lenet", "lenet5", "tensorrt", "input", [-1, 1, 32, 32], [1, 1, 1], "fp32", ["prob"],
                          tensorrt_version=built_with[0], gpu=built_with[1])
    write_engine(tmp_path / "t.engine", header, b"plan")
    if ok:
        assert open_engine(LeNetModel(), tmp_path / "t.engine")[1].payload == b"plan"
    else:
        with pytest.raises(UserError, match=r"t.engine: built with TensorRT .* rebuild the engine here"):
            open_engine(LeNetModel(), tmp_path / "t.engine")


def test_a_tensorrt_engine_on_a_machine_without_tensorrt_names_the_file_and_the_reason(tmp_path):
    header = EngineHeader("lenet", "lenet5", "tensorrt", "input", [-1, 1, 32, 32], [1, 1, 1], "fp32", ["prob"],
                          tensorrt_version="10.16.1", gpu="NVIDIA H200")
    write_engine(tmp_path / "t.engine", header, b"plan")
    with pytest.raises(UserError, match="t.engine: a TensorRT engine, but the TensorRT backend cannot run here"):
        open_engine(LeNetModel(), tmp_path / "t.engine")


