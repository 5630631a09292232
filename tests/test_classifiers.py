"""MobileNet v2/v3, EfficientNet B0-B7/V2/Lite0, RegNet X/Y and MNASNet: the zoo network equals the project's own
PyTorch reference module, from random weights (randomized BatchNorm statistics) written to and read from .wts; the
references have torchvision's keys and parameter counts; variants come from the weights; flags that disagree are
errors; `validate` passes layer by layer."""
from __future__ import annotations

import argparse

import numpy as np
import pytest
import torch

import wts
from wts.weight_map import WeightMap
from zoo.efficientnet.model import EfficientNet, EfficientNetLite, EfficientNetModel
from zoo.engine.backends import ReferenceBackend
from zoo.engine.backend_api import BuildOptions
from zoo.engine.cli import main
from zoo.engine.model import state_dict_arrays
from zoo.engine.networks import define_network
from zoo.mnasnet.model import ALPHAS, MNASNet, MNASNetModel
from zoo.mobilenet.model import MobileNetV2, MobileNetV3, MobileNetModel
from zoo.regnet.model import RegNet, RegNetModel


def _args(variant, size=64, num_classes=10):
    return argparse.Namespace(variant=variant, num_classes=num_classes, input_size=size)


def _run_network(model, weights, config, x):
    backend = ReferenceBackend()
    net, outputs = define_network(model, backend, weights, config)
    runner = backend.load(backend.build(net, BuildOptions(model.input_name)))  # through serialisation
    return runner.run({model.input_name: x})[outputs[0]]


@pytest.mark.parametrize("model, variant, size", [
    (MobileNetModel(), "mobilenet_v2", 64),
    (MobileNetModel(), "mobilenet_v3_small", 64),
    (EfficientNetModel(), "efficientnet_b0", 64),
    (EfficientNetModel(), "efficientnet_v2_s", 64),   # Fused-MBConv stages, BatchNorm eps 1e-3
    (EfficientNetModel(), "efficientnet_lite0", 72),   # 72: SAME padding uneven at 72, 36, 18 and 9 px
    (RegNetModel(), "regnet_y_400mf", 64),
    (MNASNetModel(), "mnasnet0_5", 64),
])
def test_network_from_wts_equals_reference_module(model, variant, size, tmp_path):
    module = model.random_module(_args(variant, size), seed=3)
    path = tmp_path / f"{variant}.wts"
    wts.save(path, module.state_dict())
    weights = WeightMap(wts.load(path), str(path))           # flat arrays: the variant comes from keys and counts
    config = model.config_from_weights(weights, _args(None, size))
    assert config["variant"] == variant and config["num_classes"] == 10
    x = torch.randn(2, 3, size, size, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        expected = module(x)
    got = _run_network(model, weights, config, x.numpy())
    assert got.shape == expected.shape
    torch.testing.assert_close(got, expected, rtol=1e-4, atol=1e-4 * max(1.0, expected.abs().max().item()))


@pytest.mark.parametrize("make, params", [
    # torchvision's published parameter counts: the key layout and every shape are torchvision's
    (lambda: MobileNetV2(), 3504872), (lambda: MobileNetV3("mobilenet_v3_large"), 5483032),
    (lambda: MobileNetV3("mobilenet_v3_small"), 2542856),
    (lambda: EfficientNet("efficientnet_b0"), 5288548), (lambda: EfficientNet("efficientnet_b3"), 12233232),
    (lambda: EfficientNet("efficientnet_b7"), 66347960), (lambda: EfficientNet("efficientnet_b2"), 9109994),
    (lambda: EfficientNet("efficientnet_v2_s"), 21458488), (lambda: EfficientNet("efficientnet_v2_m"), 54139356),
    (lambda: EfficientNet("efficientnet_v2_l"), 118515272),
    (lambda: RegNet("regnet_y_400mf"), 4344144), (lambda: RegNet("regnet_y_16gf"), 83590140),
    (lambda: RegNet("regnet_x_400mf"), 5495976), (lambda: RegNet("regnet_x_3_2gf"), 15296552),
    (lambda: MNASNet(ALPHAS["mnasnet1_0"]), 4383312), (lambda: MNASNet(ALPHAS["mnasnet0_75"]), 3170208),
])
def test_reference_modules_have_torchvisions_parameter_counts(make, params):
    with torch.device("meta"):
        module = make()
    assert sum(p.numel() for p in module.parameters()) == params


def test_keys_are_torchvisions():
    v2 = MobileNetV2().state_dict()
    assert v2["features.1.conv.0.0.weight"].shape == (32, 1, 3, 3) and v2["features.18.0.weight"].shape == \
        (1280, 320, 1, 1) and v2["classifier.1.weight"].shape == (1000, 1280)
    v3 = MobileNetV3("mobilenet_v3_large").state_dict()
    assert v3["features.4.block.2.fc1.weight"].shape == (24, 72, 1, 1) and "classifier.3.bias" in v3
    b0 = EfficientNet("efficientnet_b0").state_dict()
    assert b0["features.1.0.block.1.fc1.weight"].shape == (8, 32, 1, 1) and b0["features.8.0.weight"].shape == \
        (1280, 320, 1, 1)
    v2 = EfficientNet("efficientnet_v2_s").state_dict()  # Fused-MBConv: a full 3x3 conv, then the 1x1 projection
    assert v2["features.2.0.block.0.0.weight"].shape == (96, 24, 3, 3)
    assert v2["features.2.0.block.1.0.weight"].shape == (48, 96, 1, 1) and "features.2.0.block.1.fc1.weight" not in v2
    assert v2["features.1.0.block.0.0.weight"].shape == (24, 24, 3, 3)
    assert v2["features.4.0.block.2.fc1.weight"].shape == (16, 256, 1, 1)
    assert v2["features.0.1.running_var"].shape == (24,) and v2["features.7.0.weight"].shape == (1280, 256, 1, 1)
    y = RegNet("regnet_y_400mf").state_dict()
    assert y["trunk_output.block1.block1-0.f.se.fc1.weight"].shape == (8, 48, 1, 1)
    assert y["trunk_output.block2.block2-0.proj.0.weight"].shape == (104, 48, 1, 1)
    assert MNASNet(1.0).state_dict()["layers.8.0.layers.3.weight"].shape == (48, 1, 3, 3)


@pytest.mark.parametrize("model, module, wrong, message", [
    (MobileNetModel(), lambda: MobileNetV3("mobilenet_v3_small", 5), "mobilenet_v2",
     "--variant mobilenet_v2 disagrees with w.pt, which holds a mobilenet_v3_small"),
    (EfficientNetModel(), lambda: EfficientNetLite(5), "efficientnet_b0",
     "--variant efficientnet_b0 disagrees with w.pt, which holds an efficientnet_lite0"),
    (RegNetModel(), lambda: RegNet("regnet_x_400mf", 5), "regnet_y_400mf",
     "--variant regnet_y_400mf disagrees with w.pt, which holds a regnet_x_400mf"),
    (MNASNetModel(), lambda: MNASNet(0.5, 5), "mnasnet1_0",
     "--variant mnasnet1_0 disagrees with w.pt, which holds a mnasnet0_5"),
])
def test_a_variant_flag_that_disagrees_with_the_weights_is_an_error(model, module, wrong, message):
    weights = WeightMap(state_dict_arrays(module()), "w.pt")
    with pytest.raises(ValueError, match=message):
        model.config_from_weights(weights, _args(wrong, 224))


@pytest.mark.parametrize("model, state, message", [
    (MobileNetModel(), lambda: MNASNet(1.0).state_dict(), "not MobileNet weights"),
    (EfficientNetModel(), lambda: MobileNetV2().state_dict(), "not EfficientNet weights"),
    (RegNetModel(), lambda: EfficientNet().state_dict(), "not RegNet weights"),
    (MNASNetModel(), lambda: RegNet().state_dict(), "not MNASNet weights"),
])
def test_weights_of_another_family_are_refused(model, state, message):
    weights = WeightMap({k: v.numpy() for k, v in state().items()}, "w.pt")
    with pytest.raises(ValueError, match=f"w.pt: {message}"):
        model.config_from_weights(weights, _args(None, 224))


@pytest.mark.parametrize("variant", ["efficientnet_b0", "efficientnet_b4", "efficientnet_b5", "efficientnet_b7"])
def test_efficientnet_variant_is_read_from_flat_counts(variant):
    """B4 and B5 share a 48-channel stem; the blocks per stage tell them apart."""
    with torch.device("meta"):
        shapes = {k: tuple(v.shape) for k, v in EfficientNet(variant).state_dict().items()}
    counts = {k: np.empty(int(np.prod(s)) if s else 1, np.float32) for k, s in shapes.items()}
    assert EfficientNetModel().config_from_weights(WeightMap(counts, "x.wts"), _args(None, 224))["variant"] == variant


@pytest.mark.parametrize("family, flags", [
    (MobileNetModel(), ["--variant", "mobilenet_v3_small", "--input-size", "64"]),
    (EfficientNetModel(), ["--variant", "efficientnet_lite0", "--input-size", "64"]),
    (EfficientNetModel(), ["--variant", "efficientnet_v2_s", "--input-size", "64"]),
    (RegNetModel(), ["--variant", "regnet_y_400mf", "--input-size", "64"]),
])
def test_validate_passes_every_layer(family, flags, capsys):
    assert main(family, ["validate", *flags]) == 0
    out = capsys.readouterr().out
    assert "layers pass (tolerance 0.0001)" in out


def test_efficientnet_v2_runs_on_onnx_runtime():
    """The registry-driven ONNX test runs each family's default variant (B0); V2's Fused-MBConv blocks get their
    own run: the ONNX writer's file on ONNX Runtime equals the PyTorch reference module (FP32, 1e-4)."""
    from zoo.engine.onnx.writer import to_onnx
    from zoo.engine.onnx.runner import OnnxRunner
    model = EfficientNetModel()
    module = model.random_module(_args("efficientnet_v2_s"), seed=3)
    weights = WeightMap(state_dict_arrays(module), "v2s.pt")
    net, outputs = define_network(model, ReferenceBackend(), weights, model.config_from_weights(weights, _args(None)))
    x = torch.randn(2, 3, 64, 64, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        expected = module(x)
    got = OnnxRunner(to_onnx(net).SerializeToString()).run({model.input_name: x.numpy()})[outputs[0]]
    torch.testing.assert_close(got, expected, rtol=1e-4, atol=1e-4 * max(1.0, expected.abs().max().item()))
