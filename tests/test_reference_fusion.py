"""The executor's fusions (conv + BatchNorm scale, sigmoid * x -> SiLU) give the unfused results, and apply only
where the hidden tensor is neither an output nor used elsewhere."""
import numpy as np
import torch

from wts.weight_map import WeightMap
import layers
from zoo.trt_api import trt
from zoo.engine.reference.executor import ReferenceExecutor
from zoo.engine.reference.network import INetworkDefinition


def _conv_bn_act_network(mark_hidden=False, extra_consumer=False):
    torch.manual_seed(0)
    conv, bn = torch.nn.Conv2d(3, 8, 3, padding=1, bias=False), torch.nn.BatchNorm2d(8, eps=1e-3)
    with torch.no_grad():
        bn.running_mean.normal_(0, 0.5), bn.running_var.uniform_(0.5, 2), bn.weight.uniform_(0.5, 1.5)
    state = {**{f"b.conv.{k}": v for k, v in conv.state_dict().items()},
             **{f"b.bn.{k}": v for k, v in bn.state_dict().items()}}
    weights = WeightMap({k: v.numpy() for k, v in state.items()}, "test")
    net = INetworkDefinition()
    x = net.add_input("x", trt.float32, (-1, 3, 10, 10))
    y = layers.conv_bn_act(net, weights, "b", x, 8, 3)
    net.mark_output(y)
    if mark_hidden:
        net.mark_output(next(net.get_layer(i).get_output(0) for i in range(net.num_layers)
                             if net.get_layer(i).name == "b.conv"))
    if extra_consumer:
        sig = next(net.get_layer(i).get_output(0) for i in range(net.num_layers)
                   if net.get_layer(i).name == "b.act/sigmoid")
        net.mark_output(layers.add(net, sig, sig, "other_use"))
    return net


def _steps(executor):
    return [type(s).__name__ for s in executor._fused]


def test_fused_equals_unfused():
    executor = ReferenceExecutor(_conv_bn_act_network())
    assert _steps(executor) == ["_Fused", "_Fused"]  # conv+scale, sigmoid*x
    x = torch.randn(2, 3, 10, 10)
    fused = executor.run({"x": x})["b"]
    unfused = executor.run({"x": x}, capture=True)["b"]
    torch.testing.assert_close(fused, unfused, rtol=1e-5, atol=1e-5)


def test_no_fusion_where_the_hidden_tensor_is_needed():
    assert _steps(ReferenceExecutor(_conv_bn_act_network(mark_hidden=True)))[:2] == ["IConvolutionLayer",
                                                                                   "IScaleLayer"]
    steps = _steps(ReferenceExecutor(_conv_bn_act_network(extra_consumer=True)))
    assert "IActivationLayer" in steps and "IElementWiseLayer" in steps


def test_resnet_and_yolov5_outputs_unchanged_by_fusion():
    import argparse
    from zoo.engine.backends import ReferenceBackend
    from zoo.engine.networks import define_network
    from zoo.engine.model import state_dict_arrays
    from zoo.resnet.model import ResNetModel
    from zoo.yolov5.zoo_model import YoloV5Model
    cases = [(ResNetModel(), argparse.Namespace(depth=18, num_classes=10, input_size=64)),
             (YoloV5Model(), argparse.Namespace(variant="n", num_classes=80, input_size=(128, 128), decode="plugin"))]
    for model, args in cases:
        weights = WeightMap(state_dict_arrays(model.random_module(args, 0)), "random")
        config = model.config_from_weights(weights, args)
        net, outputs = define_network(model, ReferenceBackend(), weights, config)
        executor = ReferenceExecutor(net)
        assert len(executor._fused) < len(executor.layers)
        x = model.sample_input(config, 2)
        fused = executor.run({model.input_name: x})[outputs[0]]
        unfused = executor.run({model.input_name: x}, capture=True)[outputs[0]]
        scale = max(1.0, unfused.abs().max().item())
        assert (fused - unfused).abs().max().item() <= 1e-4 * scale, model.name
    assert np.isfinite(fused.numpy()).all()
