"""The TensorRT path on a GPU: build, run, dynamic batch, engine header checks, and the differential test
"the same network on both backends gives the same outputs". Skipped with the reason where there is no GPU."""
import numpy as np
import pytest
import torch

from wts.weight_map import WeightMap
from zoo.engine.backends import ReferenceBackend
from zoo.engine.backend_api import BuildOptions
from zoo.engine.networks import define_network
from zoo.engine.model import state_dict_arrays




def _both(model, module, config, batch_range=(1, 2, 4)):
    from zoo.engine.tensorrt.backend import TensorRTBackend
    outputs = {}
    for backend in (ReferenceBackend(), TensorRTBackend()):
        weights = WeightMap(state_dict_arrays(module), "random")
        net, names = define_network(model, backend, weights, config)
        outputs[backend.name] = (backend.load(backend.build(net, BuildOptions(model.input_name, batch_range))),
                                 names[0])
    return outputs


def _compare(outputs, feed, rtol, atol):
    (ref, ref_name), (trt_runner, trt_name) = outputs["reference"], outputs["tensorrt"]
    expected = ref.run(feed)[ref_name]
    got = trt_runner.run(feed)[trt_name].cpu()
    scale = max(1.0, expected.abs().max().item())
    assert (got - expected).abs().max().item() <= atol * scale + rtol * expected.abs().max().item()


@pytest.mark.tensorrt
def test_resnet18_same_outputs_on_both_backends_over_a_dynamic_batch():
    import argparse
    from zoo.resnet.model import ResNetModel
    model = ResNetModel()
    args = argparse.Namespace(depth=18, num_classes=10, input_size=64)
    module = model.random_module(args, seed=0)
    config = model.config_from_weights(WeightMap(state_dict_arrays(module), "random"), args)
    outputs = _both(model, module, config)
    for batch in (1, 3, 4):  # min, between, max of the profile
        _compare(outputs, {"input": model.sample_input(config, batch, seed=batch)}, rtol=1e-3, atol=1e-3)


@pytest.mark.parametrize("decode", ["plugin", "layers"])
@pytest.mark.tensorrt
def test_yolov5n_same_outputs_on_both_backends(decode):
    import argparse
    from zoo.yolov5.zoo_model import YoloV5Model
    model = YoloV5Model()
    args = argparse.Namespace(variant="n", num_classes=80, input_size=(256, 256), decode=decode)
    module = model.random_module(args, seed=0)
    config = model.config_from_weights(WeightMap(state_dict_arrays(module), "random"), args)
    outputs = _both(model, module, config)
    _compare(outputs, {"images": model.sample_input(config, 2)}, rtol=1e-3, atol=1e-3)


@pytest.mark.tensorrt
def test_runner_accepts_cuda_array_interface_inputs_and_threads():
    import argparse
    import threading
    from zoo.lenet.model import LeNetModel
    model = LeNetModel()
    module = model.random_module(argparse.Namespace(), seed=0)
    config = model.config_from_weights(WeightMap(state_dict_arrays(module), "random"), None)
    runner, name = _both(model, module, config)["tensorrt"]
    x = torch.rand(2, 1, 32, 32)
    with torch.no_grad():
        expected = module(x)
    results = []

    def work():
        results.append(runner.run({"input": x.cuda()})[name].cpu())  # torch CUDA: __cuda_array_interface__

    threads = [threading.Thread(target=work) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(results) == 4
    for got in results:
        torch.testing.assert_close(got, expected, rtol=1e-3, atol=1e-4)


@pytest.mark.tensorrt
def test_engine_header_records_tensorrt_version_and_gpu(tmp_path):
    from zoo.engine.cli import main
    from zoo.engine.engine_file import read_header
    from zoo.mlp.model import MLPModel
    engine = tmp_path / "mlp.engine"
    assert main(MLPModel(), ["build", "-o", str(engine), "--backend", "tensorrt"]) == 0
    header = read_header(engine)[0]
    import tensorrt as trt
    assert header.backend == "tensorrt" and header.tensorrt_version == trt.__version__ and header.gpu
    np.save(tmp_path / "x.npy", np.ones((2, 1, 1, 1), np.float32))
    assert main(MLPModel(), ["infer", "--engine", str(engine), "--source", str(tmp_path / "x.npy")]) == 0


@pytest.mark.parametrize("mode", ["fp16", "int8"])
@pytest.mark.tensorrt
def test_low_precision_engines_match_the_reference_backend(mode):
    """Real FP16 and INT8 engines against the reference backend's emulation of the same network (TensorRT may pick
    other kernels and accumulation orders, so the bound is on cosine, not bits)."""
    import argparse
    from layers.precision import Precision
    from zoo.engine.quantization import as_input, calibrate
    from zoo.engine.tensorrt.backend import TensorRTBackend
    from zoo.resnet.model import ResNetModel
    model = ResNetModel()
    args = argparse.Namespace(depth=18, num_classes=10, input_size=64)
    module = model.random_module(args, seed=0)
    weights = WeightMap(state_dict_arrays(module), "random")
    config = model.config_from_weights(weights, args)
    x = model.sample_input(config, 2)
    define = lambda backend, precision: define_network(model, backend, weights, config, precision)  # noqa: E731
    scales = {}
    if mode == "int8":
        scales, _ = calibrate(define, ReferenceBackend(), lambda: [x], "input", "percentile", 99.99, 2,
                              log=lambda m: None)
    results = []
    for backend in (ReferenceBackend(), TensorRTBackend()):
        net, names = define(backend, Precision(mode, scales))
        runner = backend.load(backend.build(net, BuildOptions("input", (1, 2, 2))))
        results.append(runner.run({"input": as_input(x, mode)})[names[0]].float().cpu())
    cosine = torch.nn.functional.cosine_similarity(results[0].flatten(), results[1].flatten(), 0).item()
    assert cosine >= (0.9999 if mode == "fp16" else 0.999)


def test_array_keeper_holds_every_array_until_the_build():
    """Runs everywhere (no GPU needed): TensorRT's Weights do not copy, so temporaries must outlive the call."""
    import gc
    import weakref
    from zoo.engine.backend_api import ArrayKeeper

    class FakeNetwork:
        num_layers = 3

        def add_constant(self, shape, weights):
            return ("constant", shape)

    keeper = ArrayKeeper(FakeNetwork())
    probe = np.arange(6, dtype=np.float32)
    alive = weakref.ref(probe)
    assert keeper.add_constant((2, 3), probe) == ("constant", (2, 3))
    del probe
    gc.collect()
    assert alive() is not None and keeper.num_layers == 3
