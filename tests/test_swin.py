"""Swin Transformer V1 and V2 (zoo.swin, zoo.swin_v2).

The reference modules are the project's own (torchvision cannot be installed here), so they are held to
torchvision's facts independently:
- parameter counts equal the ones torchvision publishes for each variant (`num_params` of its Swin_*_Weights), and
  the state_dict keys follow torchvision's names (written out below from its module attributes);
- the constants (relative position index, shift mask, log-spaced offsets) equal a direct transcription of
  torchvision's definitions (loops and slice assignments, not the vectorised code under test);
- one window covering the whole map, without shift or bias, is plain multi-head attention (nn.MultiheadAttention
  with the same projections).
Then every layer of the network equals the reference module from flat .wts arrays (FP32, 1e-4 relative), on small
Swins (width 32, two blocks per stage) at 64 px: stage 1 is padded (16 -> 21) and shifted with the mask, later
stages are padded with windows larger than the map (never shifted); V2 at window 8 shifts stage 1 and pads stage 3.
"""
from __future__ import annotations

import math
import re

import numpy as np
import pytest
import torch

from layerwise import args, check_family, parameter_count, random_input
from layers import swin
from wts.weight_map import WeightMap
from zoo.engine.model import state_dict_arrays
from zoo.swin.model import (CROPS, VARIANTS, ShiftedWindowAttention, SwinModel, SwinTransformer, build,
                            randomize)

# torchvision's Swin_*_Weights.IMAGENET1K_V1 meta "num_params"
TORCHVISION_PARAMETERS = {"swin_t": 28288354, "swin_s": 49606258, "swin_b": 87768224,
                          "swin_v2_t": 28351570, "swin_v2_s": 49737442, "swin_v2_b": 87930848}
# torchvision's names: patch embedding Sequential(conv, Permute, LayerNorm), blocks (norm1, attn, norm2, mlp as
# torchvision.ops.MLP: Linear 0, GELU, Dropout, Linear 3, Dropout), PatchMerging (reduction, norm), norm, head
COMMON_KEYS = [r"features\.0\.0\.(weight|bias)", r"features\.0\.2\.(weight|bias)",
               r"features\.[1357]\.\d+\.norm[12]\.(weight|bias)", r"features\.[1357]\.\d+\.attn\.qkv\.(weight|bias)",
               r"features\.[1357]\.\d+\.attn\.proj\.(weight|bias)", r"features\.[1357]\.\d+\.mlp\.[03]\.(weight|bias)",
               r"features\.[1357]\.\d+\.attn\.relative_position_index", r"features\.[246]\.reduction\.weight",
               r"features\.[246]\.norm\.(weight|bias)", r"norm\.(weight|bias)", r"head\.(weight|bias)"]
V1_KEYS = [r"features\.[1357]\.\d+\.attn\.relative_position_bias_table"]
V2_KEYS = [r"features\.[1357]\.\d+\.attn\.logit_scale", r"features\.[1357]\.\d+\.attn\.cpb_mlp\.0\.(weight|bias)",
           r"features\.[1357]\.\d+\.attn\.cpb_mlp\.2\.weight", r"features\.[1357]\.\d+\.attn\.relative_coords_table"]


@pytest.mark.parametrize("variant", sorted(TORCHVISION_PARAMETERS))
def test_parameter_count_is_torchvisions(variant):
    assert parameter_count(build, variant) == TORCHVISION_PARAMETERS[variant]


@pytest.mark.parametrize("variant, patterns, blocks", [("swin_t", COMMON_KEYS + V1_KEYS, 12),
                                                       ("swin_v2_t", COMMON_KEYS + V2_KEYS, 12)])
def test_state_dict_keys_are_torchvisions(variant, patterns, blocks):
    with torch.device("meta"):
        state = build(variant).state_dict()
    unmatched = [k for k in state if not any(re.fullmatch(p, k) for p in patterns)]
    assert not unmatched, unmatched[:5]
    for p in patterns:  # every kind of key is there
        assert any(re.fullmatch(p, k) for k in state), p
    assert sum(k.endswith("norm1.weight") for k in state) == blocks
    assert state["features.2.reduction.weight"].shape == (192, 384)
    assert state["features.2.norm.weight"].shape == ((192,) if "v2" in variant else (384,))
    if "v2" in variant:
        assert state["features.1.0.attn.cpb_mlp.0.weight"].shape == (512, 2)
        assert state["features.5.0.attn.logit_scale"].shape == (12, 1, 1)
        assert state["features.1.0.attn.relative_coords_table"].shape == (1, 15, 15, 2)
    else:
        assert state["features.1.0.attn.relative_position_bias_table"].shape == (169, 3)


def test_relative_position_index_is_torchvisions_definition():
    for w in (2, 7, 8):
        expected = []
        for a in range(w * w):
            for b in range(w * w):
                (ya, xa), (yb, xb) = divmod(a, w), divmod(b, w)
                expected.append((ya - yb + w - 1) * (2 * w - 1) + (xa - xb + w - 1))
        assert swin.relative_position_index(w).tolist() == expected


def _torchvision_style_mask(height, width, w, shift):
    """The mask as torchvision defines it: nine regions labelled by slice assignment on the padded map."""
    labels = np.zeros((height, width))
    count = 0
    for hs in ((0, -w), (-w, -shift[0]), (-shift[0], None)):
        for ws in ((0, -w), (-w, -shift[1]), (-shift[1], None)):
            labels[hs[0]:hs[1], ws[0]:ws[1]] = count
            count += 1
    masks = []
    for wy in range(height // w):
        for wx in range(width // w):
            window = labels[wy * w:(wy + 1) * w, wx * w:(wx + 1) * w].reshape(-1)
            masks.append(np.where(window[None, :] - window[:, None] != 0, -100.0, 0.0))
    return np.stack(masks)


@pytest.mark.parametrize("height, width, w, shift", [(21, 21, 7, (3, 3)), (56, 56, 7, (3, 3)), (16, 24, 8, (4, 4)),
                                                     (14, 21, 7, (3, 3))])
def test_shift_mask_is_torchvisions_definition(height, width, w, shift):
    np.testing.assert_array_equal(swin.shift_mask(height, width, w, shift), _torchvision_style_mask(height, width, w,
                                                                                                     shift))


def test_log_spaced_coordinates_are_the_v2_formula():
    for w in (7, 8):
        table = swin.log_spaced_coordinates(w)
        assert table.shape == (1, 2 * w - 1, 2 * w - 1, 2)
        for i, dy in enumerate(range(-(w - 1), w)):
            for j, dx in enumerate(range(-(w - 1), w)):
                for value, offset in ((table[0, i, j, 0], dy), (table[0, i, j, 1], dx)):
                    t = offset / (w - 1) * 8
                    assert value == pytest.approx(math.copysign(math.log2(abs(t) + 1) / 3, t), abs=1e-6)


def test_one_unshifted_window_over_the_map_is_multi_head_attention():
    """An independent check of the reference's q/k/v split, head layout and projection."""
    torch.manual_seed(0)
    attention = ShiftedWindowAttention(48, 7, 0, 4).eval()
    with torch.no_grad():
        attention.relative_position_bias_table.zero_()
    mha = torch.nn.MultiheadAttention(48, 4, batch_first=True).eval()
    with torch.no_grad():
        mha.in_proj_weight.copy_(attention.qkv.weight)
        mha.in_proj_bias.copy_(attention.qkv.bias)
        mha.out_proj.weight.copy_(attention.proj.weight)
        mha.out_proj.bias.copy_(attention.proj.bias)
    x = torch.randn(2, 7, 7, 48)
    tokens = x.reshape(2, 49, 48)
    expected = mha(tokens, tokens, tokens, need_weights=False)[0].reshape(2, 7, 7, 48)
    torch.testing.assert_close(attention(x), expected, rtol=1e-5, atol=1e-5)


def _small(v2: bool, window: int):
    torch.manual_seed(0)
    return randomize(SwinTransformer(32, (2, 2, 2, 2), (2, 4, 8, 16), window, v2, 10), 0)


@pytest.mark.parametrize("name, v2, window", [("swin", False, 7), ("swin_v2", True, 8)])
def test_every_layer_equals_the_reference_from_flat_weights(name, v2, window):
    config = check_family(SwinModel(name), _small(v2, window), args(variant=None, num_classes=10, input_size=64),
                          random_input((2, 3, 64, 64)))
    assert (config["v2"], config["window"], config["heads"], config["depths"]) == (v2, window, [2, 4, 8, 16],
                                                                                  [2, 2, 2, 2])
    assert config["variant"] == ("swin_v2_custom" if v2 else "swin_custom")


def test_v2_ignores_the_key_bias_and_clamps_the_logit_scale():
    """Both are in the reference module; a network that differed from it would fail the layer-by-layer test, which
    uses random key biases and logit scales above log(100)."""
    module = _small(True, 8)
    attention = module.features[1][0].attn
    assert attention.qkv.bias[32:64].abs().min() > 0 and attention.qkv_bias()[32:64].abs().max() == 0
    assert attention.logit_scale.max() > math.log(100.0)


def test_crops_are_torchvisions():
    assert CROPS == {"swin_t": (224, 232), "swin_s": (224, 246), "swin_b": (224, 238),
                     "swin_v2_t": (256, 260), "swin_v2_s": (256, 260), "swin_v2_b": (256, 272)}
    import cv2
    spec = SwinModel("swin_v2").crop_spec({"variant": "swin_v2_b", "input_size": 256})
    assert (spec.crop, spec.resize, spec.interpolation) == (256, 272, cv2.INTER_CUBIC)


@pytest.mark.parametrize("module, flags, message", [
    (lambda: _small(False, 7), dict(variant="swin_t", input_size=64),
     "--variant swin_t disagrees with w.pt, which holds a swin_custom"),
    (lambda: _small(True, 8), dict(variant=None, input_size=48), "--input-size 48 is not a positive multiple of 32"),
])
def test_a_flag_that_disagrees_is_one_clear_error(module, flags, message):
    weights = WeightMap(state_dict_arrays(module()), "w.pt")
    with pytest.raises(ValueError, match=message):
        SwinModel("swin").config_from_weights(weights, args(num_classes=10, **flags))


def test_a_wrong_relative_position_index_is_refused():
    state = state_dict_arrays(_small(False, 7))
    state["features.1.0.attn.relative_position_index"] = state["features.1.0.attn.relative_position_index"][::-1]
    model = SwinModel("swin")
    weights = WeightMap(state, "w.pt")
    config = model.config_from_weights(weights, args(variant=None, num_classes=10, input_size=64))
    from zoo.engine.backends import ReferenceBackend
    from zoo.engine.networks import define_network
    with pytest.raises(ValueError, match="features.1.0.attn.relative_position_index' is not the relative position"):
        define_network(model, ReferenceBackend(), weights, config)


def test_variants_have_torchvisions_configuration():
    assert VARIANTS["swin_b"] == (False, 128, (2, 2, 18, 2), (4, 8, 16, 32), 7)
    assert VARIANTS["swin_v2_t"] == (True, 96, (2, 2, 6, 2), (3, 6, 12, 24), 8)
