"""Folded BatchNorm weights (what ONNX exports and fused models carry: a conv bias, no BatchNorm keys) for every
family of the zoo (zoo.registry.families(), so families added later are covered with no edit).

Each family's seeded random module (random BatchNorm statistics) is folded by zoo.engine.folding; the configuration
is read back from the folded weights alone, the network built from them must use every key, and its output must
equal the ORIGINAL, unfolded module's within 1e-4 x max(1, max|ref|). Families with no conv+BatchNorm pair (LeNet,
the MLP, MTCNN) have nothing to fold and are skipped with that reason.
"""
from __future__ import annotations

import copy

import pytest
import torch

from wts.weight_map import WeightMap
from zoo.engine.backends import ReferenceBackend
from zoo.engine.cli import make_parser
from zoo.engine.folding import conv_bn_pairs, fold_batchnorm
from zoo.engine.model import load_state_into, state_dict_arrays
from zoo.engine.pipeline import is_pipeline
from zoo.engine.networks import define_network
from zoo.registry import families

from families import small_input_args

FAMILIES = families()


def _random(family, seed: int = 5):
    """(model, args, module) with the family's default random module at a small input where the family takes one."""
    model = family.load()
    args = small_input_args(model)
    if is_pipeline(model):  # its first network, with the weights the pipeline loads (MTCNN: trained P-Net)
        stage = model.load_stages(args)[0]
        return stage.network, args, load_state_into(stage.network.reference_module(stage.config), stage.weights)
    return model, args, model.random_module(args, seed)


def _config(model, args, weights):
    try:
        return model.config_from_weights(weights, args)
    except ValueError:  # the family's input size is fixed (e.g. ViT's position embedding): its default
        return model.config_from_weights(weights, make_parser(model).parse_args(["validate"]))


@pytest.mark.parametrize("family", FAMILIES, ids=[f.name for f in FAMILIES])
def test_folded_weights_build_the_unfolded_network(family):
    model, args, module = _random(family)
    if not conv_bn_pairs(module):
        pytest.skip(f"{family.name} has no convolution followed by a BatchNorm")
    folded = fold_batchnorm(copy.deepcopy(module))
    weights = WeightMap(state_dict_arrays(folded), f"{family.name}-folded.onnx")
    config = _config(model, args, weights)
    net, outputs = define_network(model, ReferenceBackend(), weights, config)
    assert weights.unused() == []
    x = model.sample_input(config, 2, seed=1)
    got = ReferenceBackend().runner_for(net).run({model.input_name: x})[outputs[0]]
    with torch.no_grad():
        expected = module(torch.from_numpy(x))
    expected = expected[0] if isinstance(expected, (tuple, list)) else expected
    error = (got.float() - expected.float()).abs().max().item()
    assert error <= 1e-4 * max(1.0, expected.abs().max().item()), f"{family.name}: max error {error:.3e}"
