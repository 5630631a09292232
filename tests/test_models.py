"""MLP, LeNet and ResNet: the zoo network equals the PyTorch reference, from random weights and from .wts files."""
import argparse

import numpy as np
import pytest
import torch

import wts
from wts.weight_map import WeightError, WeightMap
from zoo.engine.backends import ReferenceBackend
from zoo.engine.backend_api import BuildOptions
from zoo.engine.networks import define_network
from zoo.engine.model import load_state_into, state_dict_arrays
from zoo.engine import validate
from zoo.lenet.model import LeNetModel
from zoo.mlp.model import MLPModel
from zoo.resnet.model import ResNet, ResNetModel, infer_depth


def _args(**kw):
    return argparse.Namespace(**{"depth": None, "num_classes": 1000, "input_size": 224, **kw})


def _run_network(model, weights, config, x):
    backend = ReferenceBackend()
    net, outputs = define_network(model, backend, weights, config)
    runner = backend.load(backend.build(net, BuildOptions(model.input_name)))  # through serialisation
    return runner.run({model.input_name: x})[outputs[0]]


@pytest.mark.parametrize("model, args, shape", [
    (MLPModel(), _args(), (3, 1, 1, 1)),
    (LeNetModel(), _args(), (2, 1, 32, 32)),
    (ResNetModel(), _args(depth=18, num_classes=10, input_size=64), (2, 3, 64, 64)),
    (ResNetModel(), _args(depth=50, num_classes=7, input_size=64), (1, 3, 64, 64)),
])
def test_network_equals_reference_module(model, args, shape):
    module = model.random_module(args, seed=3)
    weights = WeightMap(state_dict_arrays(module), "test")
    config = model.config_from_weights(weights, args)
    x = torch.randn(shape, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        expected = module(x)
    got = _run_network(model, weights, config, x.numpy())
    assert got.shape == expected.shape
    torch.testing.assert_close(got, expected, rtol=1e-4, atol=1e-4 * max(1.0, expected.abs().max().item()))


def test_resnet_keys_match_torchvision_layout():
    """Key names and shapes as in torchvision's resnet18 (facts: 102 keys incl. num_batches_tracked)."""
    state = ResNet(18).state_dict()
    assert len(state) == 122
    assert state["conv1.weight"].shape == (64, 3, 7, 7)
    assert state["layer2.0.downsample.0.weight"].shape == (128, 64, 1, 1)
    assert state["layer4.1.bn2.running_var"].shape == (512,)
    assert state["fc.weight"].shape == (1000, 512)
    assert sum(v.numel() for k, v in state.items() if "running" not in k and "num_batches" not in k) == 11689512
    assert sum(p.numel() for p in ResNet(50).parameters()) == 25557032
    assert sum(p.numel() for p in ResNet(34).parameters()) == 21797672


@pytest.mark.parametrize("depth", [18, 34, 50, 101])
def test_resnet_depth_is_read_from_flat_weights(depth):
    flat = {k: v.reshape(-1) for k, v in state_dict_arrays(ResNet(depth, 5)).items()}
    assert infer_depth(WeightMap(flat, "x.wts"), "x.wts") == (depth, 5)


def test_resnet_depth_flag_that_disagrees_is_an_error():
    weights = WeightMap(state_dict_arrays(ResNet(18, 5)), "r18.pt")
    with pytest.raises(ValueError, match="--depth 50 disagrees with r18.pt, which holds a ResNet-18"):
        ResNetModel().config_from_weights(weights, _args(depth=50))


def test_lenet_from_tensorrtx_style_wts(tmp_path):
    """A .wts in tensorrtx's exact format (double space, written independently here) validates at 1e-4."""
    module = LeNetModel().random_module(_args(), seed=1)
    path = tmp_path / "lenet.wts"
    state = module.state_dict()
    import struct
    with open(path, "w") as f:
        f.write(f"{len(state)}\n")
        for name, value in state.items():
            values = value.reshape(-1).float().tolist()
            f.write(f"{name} {len(values)} " + "".join(" " + struct.pack(">f", v).hex() for v in values) + "\n")
    weights = WeightMap(wts.load(path), str(path))
    config = LeNetModel().config_from_weights(weights, _args())
    x = torch.rand(2, 1, 32, 32)
    with torch.no_grad():
        expected = module(x)
    torch.testing.assert_close(_run_network(LeNetModel(), weights, config, x.numpy()), expected, rtol=1e-4, atol=1e-4)


def test_validation_names_match_module_names():
    """Every ResNet-18 module with a tensor output is compared (names are the contract, no hand-written map)."""
    model, args = ResNetModel(), _args(depth=18, num_classes=10, input_size=64)
    module = model.random_module(args, seed=0)
    weights = WeightMap(state_dict_arrays(module), "test")
    expected = validate.reference_outputs(module, torch.rand(1, 3, 64, 64))
    backend = ReferenceBackend()
    net, _ = define_network(model, backend, weights, model.config_from_weights(weights, args))
    compared = set(validate.mark_comparable(net, set(expected)))
    # Every convolution, batch norm and block output of the reference has a network tensor of that name; a stage's
    # last block is the same tensor as the stage's output and carries the outer name (layer1.1 is layer1).
    last_blocks = {"layer1.1", "layer2.1", "layer3.1", "layer4.1"}
    for name in expected:
        if name.split(".")[-1].startswith(("conv", "bn")) or name.count(".") == 1 and name not in last_blocks:
            assert name in compared, name
    assert {"conv1", "bn1", "relu", "maxpool", "layer1", "layer4", "avgpool", "fc"} <= compared


def test_validate_catches_a_wrong_batchnorm_eps():
    """A builder bug (eps 1e-3 instead of 1e-5) must show up as a layer over tolerance."""
    module = ResNet(18, 10).eval()
    for m in module.modules():
        if isinstance(m, torch.nn.BatchNorm2d):
            m.running_var.fill_(1e-3)  # small variances make eps matter
    x = torch.rand(1, 3, 64, 64)
    ref = validate.reference_outputs(module, x)
    module.bn1.eps = 1e-3
    wrong = validate.reference_outputs(module, x)
    assert not validate.compare("bn1", wrong["bn1"], ref["bn1"], 1e-4).ok


def test_wrong_architecture_weights_are_refused():
    weights = WeightMap(state_dict_arrays(ResNet(18)), "resnet18.pt")
    with pytest.raises(ValueError, match="resnet18.pt: key 'conv1.weight' has 9408 values, LeNet-5 needs 150"):
        LeNetModel().config_from_weights(weights, _args())


def test_weight_map_names_key_and_source():
    weights = WeightMap({"a.weight": np.zeros(6, np.float32)}, "m.wts")
    with pytest.raises(WeightError, match=r"m.wts: key 'a.weight' has 6 values, the architecture expects shape \(2, 4\)"):
        weights.take("a.weight", (2, 4))
    with pytest.raises(WeightError, match=r"m.wts: missing key 'a.bias' \(keys with the same prefix: \['a.weight'\]\)"):
        weights.take("a.bias", (2,))


def test_state_loads_into_module_from_flat_arrays():
    module = ResNet(18, 3)
    flat = {k: v.reshape(-1) for k, v in state_dict_arrays(module).items()}
    restored = load_state_into(ResNet(18, 3), WeightMap(flat, "flat"))
    for key, value in module.state_dict().items():
        assert torch.equal(restored.state_dict()[key], value), key
