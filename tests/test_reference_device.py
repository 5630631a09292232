"""The reference backend on a device other than the CPU: the same network, weights moved once, inputs on each run,
plugins with their GPU kernels on CUDA. On a CPU machine the device plumbing is checked on PyTorch's `meta` device
(a tensor left on the CPU would fail to mix with meta tensors); on a GPU, CPU and CUDA results are compared."""
from __future__ import annotations

import argparse

import pytest
import torch

from wts.weight_map import WeightMap
from zoo.engine.backends import ReferenceBackend
from zoo.engine.model import state_dict_arrays
from zoo.engine.reference.executor import ReferenceExecutor
from zoo.engine.networks import define_network
from zoo.lenet.model import LeNetModel
from zoo.resnet.model import ResNetModel
from zoo.yolov5.zoo_model import YoloV5Model

CASES = [
    (YoloV5Model(), argparse.Namespace(variant=None, num_classes=None, input_size=(64, 64), decode="plugin")),
    (YoloV5Model(), argparse.Namespace(variant=None, num_classes=None, input_size=(64, 64), decode="layers")),
    (ResNetModel(), argparse.Namespace(depth=18, num_classes=10, input_size=64)),
    (LeNetModel(), argparse.Namespace()),
]


def _network(model, args):
    module = model.random_module(args, 0)
    weights = WeightMap(state_dict_arrays(module), "random")
    config = model.config_from_weights(weights, args)
    net, outputs = define_network(model, ReferenceBackend(), weights, config)
    return net, outputs[0], model.sample_input(config, 2)


@pytest.mark.parametrize("model, args", CASES[::2], ids=["yolov5n-plugin", "resnet18"])
def test_every_tensor_follows_the_device(model, args):
    net, output, x = _network(model, args)
    expected = ReferenceExecutor(net).run({model.input_name: x})[output]
    got = ReferenceExecutor(net, "meta").run({model.input_name: torch.from_numpy(x)})[output]
    assert got.device.type == "meta" and got.shape == expected.shape and got.dtype == expected.dtype


def test_device_cuda_without_cuda_is_one_clear_error(capsys):
    from zoo.engine.cli import main
    if torch.cuda.is_available():
        pytest.skip("this machine has CUDA")
    assert main(LeNetModel(), ["validate", "--backend", "reference", "--device", "cuda"]) == 2
    assert "--device cuda: PyTorch sees no CUDA device" in capsys.readouterr().err


@pytest.mark.cuda
@pytest.mark.parametrize("model, args", CASES, ids=["yolov5n-plugin", "yolov5n-layers", "resnet18", "lenet"])
def test_cuda_reference_equals_cpu_reference(model, args):
    """Every layer type of the zoo's models, with the decode plugin's Triton kernel on CUDA: FP32 tolerance."""
    net, output, x = _network(model, args)
    cpu = ReferenceExecutor(net).run({model.input_name: x}, capture=True)
    cuda = ReferenceExecutor(net, "cuda").run({model.input_name: torch.from_numpy(x).cuda()}, capture=True)
    assert set(cuda) == set(cpu)
    for name, expected in cpu.items():
        got = cuda[name].cpu().float()
        expected = expected.float()
        scale = max(1.0, expected.abs().max().item())
        assert (got - expected).abs().max().item() <= 1e-4 * scale, name
