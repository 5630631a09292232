"""The classifier families on torchvision's keys: ResNeXt / Wide ResNet, VGG, AlexNet, SqueezeNet, ShuffleNet v2,
DenseNet, GoogLeNet, Inception v3, ConvNeXt, ViT.

- Key layout: each reference module's parameter count equals the one torchvision publishes for that variant (its
  documentation's model table), counted on the meta device (no memory).
- Configuration: every variant's configuration is read back from its keys and value counts alone (as from a .wts),
  and a flag that disagrees with the weights is a one-line error.
- Every layer: one or two variants per family with random weights (BatchNorm statistics, LayerNorm affines, layer
  scales and class tokens randomized) go through the network as flat .wts arrays, and every tensor a PyTorch module
  outputs is compared at FP32 1e-4 relative to max(1, max|ref|) (tests/layerwise.py). Small inputs where the
  family's pooling allows; VGG and AlexNet at 1/8 of torchvision's widths and ViT at width 64 (the keys, hence the
  configuration code, are torchvision's; the full-size networks are validated by `validate` runs in the README).
  No family needs a wider tolerance than 1e-4: attention and LayerNorm stay within 3e-6 on ViT-B/32.
"""
from __future__ import annotations

import numpy as np
import pytest
import torch

import wts
from layerwise import args, check_family, parameter_count, random_input
from wts.weight_map import WeightMap
from zoo.alexnet.model import AlexNet, AlexNetModel
from zoo.convnext.model import VARIANTS as CONVNEXT, ConvNeXt, ConvNeXtModel
from zoo.densenet.model import VARIANTS as DENSENET, DenseNet, DenseNetModel
from zoo.engine.cli import main
from zoo.engine.model import randomize_batchnorm
from zoo.googlenet.model import GoogLeNet, GoogLeNetModel
from zoo.inception.model import Inception3, InceptionModel
from zoo.resnet.model import VARIANTS as RESNET, ResNet, ResNetModel
from zoo.shufflenet.model import WIDTHS as SHUFFLENET, ShuffleNetModel, ShuffleNetV2
from zoo.squeezenet.model import SqueezeNet, SqueezeNetModel
from zoo.vgg.model import LAYOUTS as VGG_LAYOUTS, VARIANTS as VGG_VARIANTS, VGG, VGGModel
from zoo.vit.model import VARIANTS as VIT, VisionTransformer, ViTModel, randomize as randomize_vit

# torchvision's published parameter counts (documentation, "num_params" of each weights enum)
TORCHVISION_PARAMETERS = {
    "resnext50_32x4d": 25028904, "resnext101_32x8d": 88791336, "resnext101_64x4d": 83455272,
    "wide_resnet50_2": 68883240, "wide_resnet101_2": 126886696,
    "vgg11": 132863336, "vgg11_bn": 132868840, "vgg13": 133047848, "vgg13_bn": 133053736, "vgg16": 138357544,
    "vgg16_bn": 138365992, "vgg19": 143667240, "vgg19_bn": 143678248, "alexnet": 61100840,
    "squeezenet1_0": 1248424, "squeezenet1_1": 1235496,
    "shufflenet_v2_x0_5": 1366792, "shufflenet_v2_x1_0": 2278604, "shufflenet_v2_x1_5": 3503624,
    "shufflenet_v2_x2_0": 7393996,
    "densenet121": 7978856, "densenet161": 28681000, "densenet169": 14149480, "densenet201": 20013928,
    "googlenet": 6624904, "inception_v3": 27161264,
    "convnext_tiny": 28589128, "convnext_small": 50223688, "convnext_base": 88591464, "convnext_large": 197767336,
    "vit_b_16": 86567656, "vit_b_32": 88224232, "vit_l_16": 304326632, "vit_l_32": 306535400,
    "vit_h_14": 632045800,
}


def _vit(variant):
    patch, dim, num_layers, heads, mlp = VIT[variant]
    return VisionTransformer, (224, patch, num_layers, heads, dim, mlp), ViTModel(), {"heads": None}


def _module_of(variant: str):
    """(module class, constructor args, zoo model, extra flags) of a torchvision variant."""
    if variant in RESNET:
        return ResNet, (RESNET[variant][0], 1000, *RESNET[variant][1:]), ResNetModel(), {"depth": None,
                                                                                          "input_size": 224}
    if variant in VGG_VARIANTS:
        depth, bn = VGG_VARIANTS[variant]
        return VGG, (VGG_LAYOUTS[depth], bn), VGGModel(), {"input_size": 224}
    if variant == "alexnet":
        return AlexNet, (), AlexNetModel(), {"input_size": 224}
    if variant.startswith("squeezenet"):
        return SqueezeNet, (variant,), SqueezeNetModel(), {"input_size": 224}
    if variant in SHUFFLENET:
        return ShuffleNetV2, (SHUFFLENET[variant],), ShuffleNetModel(), {"input_size": 224}
    if variant in DENSENET:
        return DenseNet, DENSENET[variant], DenseNetModel(), {"input_size": 224}
    if variant == "googlenet":
        return GoogLeNet, (1000, False), GoogLeNetModel(), {"input_size": 224, "transform_input": "on"}
    if variant == "inception_v3":
        return Inception3, (), InceptionModel(), {"input_size": 299, "transform_input": "on"}
    if variant in CONVNEXT:
        return ConvNeXt, CONVNEXT[variant], ConvNeXtModel(), {"input_size": 224}
    return _vit(variant)


@pytest.mark.parametrize("variant", sorted(TORCHVISION_PARAMETERS))
def test_parameter_count_is_torchvisions_and_the_variant_is_read_back_from_value_counts(variant):
    cls, ctor, model, flags = _module_of(variant)
    assert parameter_count(cls, *ctor) == TORCHVISION_PARAMETERS[variant]
    with torch.device("meta"):
        state = cls(*ctor).state_dict()
    # zero-stride arrays: the right value counts, no memory; flattened, as a .wts gives them
    weights = WeightMap({k: np.broadcast_to(np.float32(0), (v.numel(),)) for k, v in state.items()}, "x.wts")
    config = model.config_from_weights(weights, args(variant=None, num_classes=1000, **flags))
    assert config["variant"] == variant
    assert config["num_classes"] == 1000


def _bn(module, seed=0):
    randomize_batchnorm(module, torch.Generator().manual_seed(seed))
    return module


def _eighth(layout):
    return [item if item == "M" else item // 8 for item in layout]


CASES = {  # name: (zoo model, module factory, flags, input shape)
    "resnext50_32x4d": (ResNetModel(), lambda: _bn(ResNet(50, 10, 32, 4)),
                        dict(variant=None, depth=None, input_size=32), (1, 3, 32, 32)),
    "vgg11_bn/8": (VGGModel(), lambda: _bn(VGG(_eighth(VGG_LAYOUTS[11]), True, 64, 10)),
                   dict(variant=None, input_size=64), (2, 3, 64, 64)),
    "vgg16/8": (VGGModel(), lambda: VGG(_eighth(VGG_LAYOUTS[16]), False, 64, 10),
                dict(variant=None, input_size=48), (1, 3, 48, 48)),
    "alexnet/8": (AlexNetModel(), lambda: AlexNet((8, 24, 48, 32, 32), 64, 10), dict(input_size=64), (2, 3, 64, 64)),
    "squeezenet1_0": (SqueezeNetModel(), lambda: SqueezeNet("squeezenet1_0", 10), dict(variant=None, input_size=63),
                      (1, 3, 63, 63)),
    "squeezenet1_1": (SqueezeNetModel(), lambda: SqueezeNet("squeezenet1_1", 10), dict(variant=None, input_size=48),
                      (2, 3, 48, 48)),
    "shufflenet_v2_x0_5": (ShuffleNetModel(), lambda: _bn(ShuffleNetV2(SHUFFLENET["shufflenet_v2_x0_5"], 10)),
                           dict(variant=None, input_size=32), (2, 3, 32, 32)),
    "densenet121": (DenseNetModel(), lambda: _bn(DenseNet(*DENSENET["densenet121"], 10)),
                    dict(variant=None, input_size=32), (1, 3, 32, 32)),
    "googlenet": (GoogLeNetModel(), lambda: _bn(GoogLeNet(10)), dict(input_size=64, transform_input="on"),
                  (1, 3, 64, 64)),
    "inception_v3": (InceptionModel(), lambda: _bn(Inception3(10)), dict(input_size=75, transform_input="on"),
                     (1, 3, 75, 75)),
    "convnext_tiny": (ConvNeXtModel(), lambda: ConvNeXtModel().random_module(
        args(variant="convnext_tiny", num_classes=10), 0), dict(variant=None, input_size=32), (1, 3, 32, 32)),
    "vit/64": (ViTModel(), lambda: randomize_vit(VisionTransformer(64, 16, 2, 4, 64, 128, 10), 0),
               dict(variant=None, heads=4), (2, 3, 64, 64)),
}


@pytest.mark.parametrize("case", sorted(CASES))
def test_every_layer_equals_the_reference_from_flat_weights(case):
    model, factory, flags, shape = CASES[case]
    torch.manual_seed(0)
    config = check_family(model, factory(), args(num_classes=10, **flags), random_input(shape))
    assert config["num_classes"] == 10


@pytest.mark.parametrize("model, module, flags, message", [
    (VGGModel(), lambda: VGG(_eighth(VGG_LAYOUTS[11]), False, 8, 3), dict(variant="vgg16", input_size=224),
     "--variant vgg16 disagrees with w.pt, which holds a vgg11_custom_width"),
    (ResNetModel(), lambda: ResNet(50, 3, 32, 4), dict(variant="wide_resnet50_2", depth=None, input_size=224),
     "--variant wide_resnet50_2 disagrees with w.pt, which holds a resnext50_32x4d"),
    (ResNetModel(), lambda: ResNet(50, 3, 32, 4), dict(variant=None, depth=101, input_size=224),
     "--depth 101 disagrees with w.pt, which holds a ResNet-50"),
    (SqueezeNetModel(), lambda: SqueezeNet("squeezenet1_1", 3), dict(variant="squeezenet1_0", input_size=224),
     "--variant squeezenet1_0 disagrees"),
    (ViTModel(), lambda: VisionTransformer(64, 16, 1, 2, 40, 8, 3), dict(variant=None, heads=None),
     "width 40 is none of torchvision's"),
    (ViTModel(), lambda: VisionTransformer(64, 16, 1, 2, 40, 8, 3), dict(variant=None, heads=3),
     "--heads 3 does not divide the weights' width 40"),
    (InceptionModel(), lambda: Inception3(3, aux_logits=False), dict(input_size=64, transform_input="on"),
     "--input-size 64 is below 75"),
    (ResNetModel(), lambda: VGG(_eighth(VGG_LAYOUTS[11]), False, 8, 3), dict(variant=None, depth=None, input_size=224),
     "not ResNet weights"),
])
def test_a_flag_that_disagrees_with_the_weights_is_one_clear_error(model, module, flags, message):
    from zoo.engine.model import state_dict_arrays
    weights = WeightMap(state_dict_arrays(module()), "w.pt")
    with pytest.raises(ValueError, match=message.replace("(", r"\(").replace(")", r"\)")):
        model.config_from_weights(weights, args(num_classes=1000, **flags))


def test_validate_command_on_a_wts_file(tmp_path, capsys):
    """The real CLI on a tensorrtx-style .wts written from a random SqueezeNet 1.1: every layer within 1e-4."""
    module = SqueezeNet("squeezenet1_1", 7)
    path = tmp_path / "squeezenet1_1.wts"
    wts.save(path, module.state_dict())
    assert main(SqueezeNetModel(), ["validate", "--weights", str(path), "--input-size", "64", "--batch", "2"]) == 0
    out = capsys.readouterr().out
    assert "all 65 layers pass (tolerance 0.0001)" in out


def test_families_use_their_own_crop():
    assert InceptionModel().crop_spec({"input_size": 299}).resize == 342
    assert ConvNeXtModel().crop_spec({"input_size": 224, "variant": "convnext_tiny"}).resize == 236
    assert ViTModel().crop_spec({"image_size": 224, "variant": "vit_l_16"}).resize == 242
    assert VGGModel().crop_spec({"input_size": 224}).resize == 256
