"""Folded BatchNorm as an input of every family: zoo.engine.folding against the unfolded modules, and YOLOv5 and
ResNet networks built from folded weights (conv biases, no BatchNorm keys) against the original PyTorch modules."""
import argparse
import copy

import torch

from wts.weight_map import WeightMap
from zoo.engine import validate
from zoo.engine.backends import ReferenceBackend
from zoo.engine.folding import conv_bn_pairs, fold_batchnorm, match_folding
from zoo.engine.model import load_state_into, randomize_batchnorm, state_dict_arrays
from zoo.engine.networks import define_network
from zoo.resnet.model import ResNet, ResNetModel
from zoo.yolov5.model import YoloV5, random_yolov5
from zoo.yolov5.zoo_model import YoloV5Model


def _resnet18():
    torch.manual_seed(0)
    module = ResNet(18, 10)
    randomize_batchnorm(module, torch.Generator().manual_seed(1))
    return module.eval()


def test_pairs_are_found_in_each_family():
    pairs = conv_bn_pairs(_resnet18())
    assert ("conv1", "bn1") in pairs and ("layer2.0.downsample.0", "layer2.0.downsample.1") in pairs
    assert len(pairs) == 20  # 1 stem + 16 block convs + 3 downsamples
    v5 = conv_bn_pairs(YoloV5())
    assert ("model.0.conv", "model.0.bn") in v5 and all(b == c[:-4] + "bn" for c, b in v5)


def test_folding_keeps_the_output_and_drops_every_batchnorm_key():
    module = _resnet18()
    x = torch.randn(2, 3, 64, 64)
    expected = module(x)
    folded = fold_batchnorm(_resnet18())
    keys = folded.state_dict().keys()
    assert not any(k.startswith("bn1.") or ".bn" in k for k in keys) and "conv1.bias" in keys
    torch.testing.assert_close(folded(x), expected, rtol=1e-4, atol=1e-4)


def test_match_folding_follows_the_keys():
    module = match_folding(_resnet18(), ["conv1.weight", "conv1.bias", "bn1.running_mean"])
    assert module.bn1.__class__.__name__ == "BatchNorm2d"  # bn1 keys present: left alone
    module = match_folding(_resnet18(), ["conv1.weight", "conv1.bias"])
    assert isinstance(module.bn1, torch.nn.Identity) and module.conv1.bias is not None
    assert isinstance(module.layer1[0].bn1, torch.nn.BatchNorm2d)  # its keys are not folded: untouched


def _network_output(model, weights, args, x):
    config = model.config_from_weights(weights, args)
    backend = ReferenceBackend()
    net, outputs = define_network(model, backend, weights, config)
    return config, backend.runner_for(net).run({model.input_name: x.numpy()})[outputs[0]]


def test_resnet_from_folded_weights():
    module = _resnet18()
    weights = WeightMap(state_dict_arrays(fold_batchnorm(_resnet18())), "resnet18-folded.onnx")
    x = torch.randn(2, 3, 64, 64)
    args = argparse.Namespace(depth=None, num_classes=10, input_size=64)
    config, out = _network_output(ResNetModel(), weights, args, x)
    assert config["depth"] == 18 and weights.unused() == []
    with torch.no_grad():
        expected = module(x)
    assert (out - expected).abs().max() <= 1e-4 * max(1.0, expected.abs().max().item())
    # validate's reference module is folded to match the weights, and every layer agrees
    reference = load_state_into(ResNetModel().reference_module(config), weights)
    ref_out = validate.reference_outputs(reference, x)
    torch.testing.assert_close(ref_out["__output__"], expected, rtol=1e-4, atol=1e-4)


def test_yolov5_from_folded_weights():
    module = random_yolov5("n", seed=0)
    folded = fold_batchnorm(copy.deepcopy(module))
    weights = WeightMap(state_dict_arrays(folded), "yolov5n-folded.wts")
    assert not any(".bn." in k for k in weights.keys())
    args = argparse.Namespace(input_size=(128, 128), decode="plugin", variant="n", num_classes=80)
    model = YoloV5Model()
    x = torch.from_numpy(model.sample_input(model.config_from_weights(weights, args), 1, seed=1))
    config, out = _network_output(model, weights, args, x)
    assert config["variant"] == "n" and weights.unused() == []
    with torch.no_grad():
        expected = module(x)
    assert (out - expected).abs().max() <= 1e-4 * max(1.0, expected.abs().max().item())
