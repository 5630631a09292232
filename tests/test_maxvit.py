"""MaxViT (zoo.maxvit).

The reference module is the project's own (torchvision cannot be installed here), held to torchvision's facts:
- its parameter count is the one torchvision publishes for maxvit_t (MaxVit_T_Weights num_params 30919624) and its
  state_dict keys follow torchvision's names (written out below from its module attributes);
- block and grid partitions put together the tokens torchvision's reshapes do (checked on a coordinate map);
- one group of tokens with no position bias is multi-head attention with torchvision's C^-1/2 scale
  (nn.MultiheadAttention, whose d^-1/2 scale is undone on its q projection).
Every layer of the network equals the reference module from flat .wts arrays (FP32, 1e-4 relative) on a small MaxViT
(partition 2, widths 16-64) at 64 px; maxvit_t itself needs 224 px (every block's map divisible by 7).
"""
from __future__ import annotations

import re

import pytest
import torch

from layerwise import args, check_family, parameter_count, random_input
from wts.weight_map import WeightMap
from zoo.engine.model import state_dict_arrays
from zoo.maxvit.model import (MaxVit, MaxVitModel, PartitionAttentionLayer, RelativePositionalMultiHeadAttention,
                              randomize)

LAYER = r"blocks\.\d\.layers\.\d\.layers\."
ATTENTION = LAYER + r"(window|grid)_attention\."
TORCHVISION_KEYS = [  # Conv2dNormActivation (conv 0, bn 1), MBConv (proj, layers.*), PartitionAttentionLayer
    r"stem\.0\.0\.weight", r"stem\.0\.1\.(weight|bias|running_mean|running_var|num_batches_tracked)",
    r"stem\.1\.0\.(weight|bias)", LAYER + r"MBconv\.proj\.1\.(weight|bias)",
    LAYER + r"MBconv\.layers\.pre_norm\.(weight|bias|running_mean|running_var|num_batches_tracked)",
    LAYER + r"MBconv\.layers\.conv_[ab]\.0\.weight",
    LAYER + r"MBconv\.layers\.conv_[ab]\.1\.(weight|bias|running_mean|running_var|num_batches_tracked)",
    LAYER + r"MBconv\.layers\.squeeze_excitation\.fc[12]\.(weight|bias)", LAYER + r"MBconv\.layers\.conv_c\.(weight|bias)",
    ATTENTION + r"attn_layer\.0\.(weight|bias)", ATTENTION + r"attn_layer\.1\.(to_qkv|merge)\.(weight|bias)",
    ATTENTION + r"attn_layer\.1\.relative_position_(bias_table|index)", ATTENTION + r"mlp_layer\.[013]\.(weight|bias)",
    r"classifier\.2\.(weight|bias)", r"classifier\.3\.(weight|bias)", r"classifier\.5\.weight"]


def test_parameter_count_and_keys_are_torchvisions():
    assert parameter_count(MaxVit) == 30919624
    with torch.device("meta"):
        state = MaxVit().state_dict()
    unmatched = [k for k in state if not any(re.fullmatch(p, k) for p in TORCHVISION_KEYS)]
    assert not unmatched, unmatched[:5]
    for p in TORCHVISION_KEYS:
        assert any(re.fullmatch(p, k) for k in state), p
    assert sum(k.endswith("conv_c.bias") for k in state) == 11  # 2 + 2 + 5 + 2 layers
    prefix = "blocks.2.layers.0.layers.grid_attention.attn_layer.1"
    assert state[f"{prefix}.relative_position_bias_table"].shape == (169, 8)
    assert state[f"{prefix}.relative_position_index"].shape == (49, 49)
    assert state["blocks.1.layers.0.layers.MBconv.layers.conv_a.0.weight"].shape == (512, 64, 1, 1)
    assert state["blocks.1.layers.0.layers.MBconv.layers.squeeze_excitation.fc1.weight"].shape == (32, 512, 1, 1)


@pytest.mark.parametrize("grid", [False, True])
def test_partitions_group_the_pixels_torchvision_does(grid):
    """Block attention: 2x2 tiles of a 4x4 map; grid attention: the pixels 2 apart. Each group is the channel
    values of its pixels, which here encode the pixel's row and column."""
    layer = PartitionAttentionLayer(2, 1, 2, grid, 4)
    seen = []
    layer.attn_layer = torch.nn.Identity()

    def record(_, inputs, __):
        seen.append(inputs[0])
    layer.mlp_layer = torch.nn.Sequential(torch.nn.Identity())
    layer.mlp_layer.register_forward_hook(record)
    rows, cols = torch.meshgrid(torch.arange(4.0), torch.arange(4.0), indexing="ij")
    x = torch.stack([rows, cols])[None]
    layer(x)
    groups = [sorted((int(r), int(c)) for r, c in group.tolist()) for group in seen[0][0] * 0.5]
    if grid:
        expected = [sorted((2 * a + i, 2 * b + j) for a in range(2) for b in range(2)) for i in range(2) for j in
                    range(2)]
    else:
        expected = [sorted((2 * a + i, 2 * b + j) for i in range(2) for j in range(2)) for a in range(2) for b in
                    range(2)]
    assert groups == expected


def test_one_group_without_bias_is_multi_head_attention_with_the_feature_width_scale():
    torch.manual_seed(0)
    c, heads = 64, 4
    attention = RelativePositionalMultiHeadAttention(c, c // heads, 3).eval()
    with torch.no_grad():
        attention.relative_position_bias_table.zero_()
    mha = torch.nn.MultiheadAttention(c, heads, batch_first=True).eval()
    undo = (c // heads) ** 0.5 / c ** 0.5  # MHA scales q by d^-1/2; torchvision's MaxViT scales k by C^-1/2
    with torch.no_grad():
        mha.in_proj_weight.copy_(attention.to_qkv.weight)
        mha.in_proj_bias.copy_(attention.to_qkv.bias)
        mha.in_proj_weight[:c] *= undo
        mha.in_proj_bias[:c] *= undo
        mha.out_proj.weight.copy_(attention.merge.weight)
        mha.out_proj.bias.copy_(attention.merge.bias)
    x = torch.randn(2, 1, 9, c)
    expected = mha(x[:, 0], x[:, 0], x[:, 0], need_weights=False)[0]
    torch.testing.assert_close(attention(x)[:, 0], expected, rtol=1e-5, atol=1e-5)


def _small():
    torch.manual_seed(0)
    return randomize(MaxVit(64, 16, (16, 32, 32, 64), (2, 1, 1, 1), 8, 2, 10), 0)


def test_every_layer_equals_the_reference_from_flat_weights():
    config = check_family(MaxVitModel(), _small(), args(variant=None, num_classes=10, input_size=64),
                          random_input((2, 3, 64, 64)))
    assert (config["partition"], config["head_dim"], config["counts"]) == (2, 8, [2, 1, 1, 1])


def test_an_input_size_the_partitions_do_not_divide_is_one_clear_error():
    with torch.device("meta"):
        module = MaxVit()
    weights = WeightMap({k: torch.zeros(v.shape).numpy() for k, v in module.state_dict().items()}, "w.pt")
    with pytest.raises(ValueError, match=r"--input-size 192 gives the blocks maps of \[48, 24, 12, 6\] pixels"):
        MaxVitModel().config_from_weights(weights, args(variant=None, num_classes=1000, input_size=192))
    config = MaxVitModel().config_from_weights(weights, args(variant=None, num_classes=1000, input_size=448))
    assert config["variant"] == "maxvit_t" and config["input_size"] == 448


def test_weights_of_another_family_are_refused():
    from zoo.swin.model import SwinTransformer
    weights = WeightMap(state_dict_arrays(SwinTransformer(32, (1, 1, 1, 1), (1, 2, 4, 8), 7)), "w.pt")
    with pytest.raises(ValueError, match="w.pt: not MaxViT weights"):
        MaxVitModel().config_from_weights(weights, args(variant=None, num_classes=10, input_size=224))


def test_crop_is_torchvisions():
    import cv2
    spec = MaxVitModel().crop_spec({"input_size": 224})  # MaxVit_T_Weights: crop 224, resize 224, bicubic
    assert (spec.crop, spec.resize, spec.interpolation) == (224, 224, cv2.INTER_CUBIC)
