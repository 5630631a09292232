"""Layer-by-layer checks on the reference backend: a classifier family (`check_family`, shared by
tests/test_classifiers_*.py) and a YOLO table walked from weights (`walk_table`, shared by the YOLO table tests).

`check_family` takes a reference module with random weights (BatchNorm statistics randomized), defines the network
from its state_dict as a checkpoint gives it (shapes checked key by key), then hands the state_dict to the family as
a .wts file would (flat arrays: the configuration must come from key names and value counts alone), defines the
network again, and compares every tensor that a PyTorch module outputs (forward hooks, matched by
name) at the given tolerance, relative to max(1, max|ref|). It also asserts that every module holding weights was
compared (under its own name or, when its output is its parent's, the parent's), so a layer cannot escape
validation by being misnamed.
"""
from __future__ import annotations

import argparse

import numpy as np
import torch

from wts.weight_map import WeightMap
from zoo.engine import validate
from zoo.engine.backends import ReferenceBackend
from zoo.engine.model import state_dict_arrays
from zoo.engine.networks import define_network
from zoo.trt_api import trt
from zoo.yolo import walker


def flat_weights(module: torch.nn.Module, source: str = "random.wts") -> WeightMap:
    """What wts.load gives: every tensor flattened, shapes forgotten."""
    return WeightMap({k: v.reshape(-1) for k, v in state_dict_arrays(module).items()}, source)


def args(**kw) -> argparse.Namespace:
    return argparse.Namespace(**kw)


def check_family(model, module: torch.nn.Module, cli_args: argparse.Namespace, x: torch.Tensor,
                 tolerance: float = 1e-4, skip_coverage: tuple[str, ...] = ()) -> dict:
    """Validate every layer; returns the configuration read from the flat weights."""
    module = module.eval()
    shaped = WeightMap(state_dict_arrays(module), "random.pt")  # as a checkpoint gives them: every key checked
    define_network(model, ReferenceBackend(), shaped, model.config_from_weights(shaped, cli_args))
    weights = flat_weights(module)
    config = model.config_from_weights(weights, cli_args)
    expected = validate.reference_outputs(module, x)
    backend = ReferenceBackend()
    net, outputs = define_network(model, backend, weights, config)
    layer_names = [net.get_layer(i).name for i in range(net.num_layers)]
    repeated = sorted({n for n in layer_names if layer_names.count(n) > 1})
    assert not repeated, f"TensorRT needs distinct layer names; repeated: {repeated[:5]}"
    compared = validate.mark_comparable(net, set(expected))
    got = backend.runner_for(net).run({model.input_name: x.numpy()})
    rows = [validate.compare(name, got[name], expected[name], tolerance) for name in compared]
    rows.append(validate.compare("output", got[outputs[0]], expected["__output__"], tolerance))
    bad = [r for r in rows if not r.ok]
    assert not bad, validate.format_table(rows, f"tolerance {tolerance:g}")
    weighted = {name for name, sub in module.named_modules()
                if name in expected and any(True for _ in sub.parameters(recurse=False))}
    missing = sorted(n for n in weighted - set(compared)
                     if not n.startswith(skip_coverage) and not covered_by_ancestor(n, compared, expected))
    assert not missing, f"modules with weights whose outputs no network tensor is named after: {missing[:10]}"
    return config


def covered_by_ancestor(name: str, compared: list[str], expected: dict) -> bool:
    """A module whose output is its enclosing module's output (the last layer of a Sequential) is compared under
    the outermost name, as the naming contract says."""
    return any(name.startswith(f"{a}.") and torch.equal(expected[name], expected[a]) for a in compared)


class AsRow(torch.nn.Module):
    """A block under `model.<index>`, as a table's row puts it, so that its modules are named as in a network."""

    def __init__(self, block: torch.nn.Module, index: int = 3):
        super().__init__()
        self.index = str(index)
        self.model = torch.nn.ModuleDict({self.index: block})

    def forward(self, x):
        return self.model[self.index](x)


def walk_table(module: torch.nn.Module, weights: WeightMap, resolved: list, options, x: torch.Tensor,
               tolerance: float = 1e-4, label: str = "") -> tuple[list[str], dict]:
    """The walker's network of `resolved` defined from `weights` and run on the reference backend, against `module`
    on `x`: every tensor named after a module and every output the module gives, at `tolerance` (asserted).
    Returns (the names compared, the module's outputs by name) for coverage checks."""
    expected = validate.reference_outputs(module, x)
    backend = ReferenceBackend()
    net = backend.create_network()
    inp = net.add_input("images", trt.float32, (-1, 3, *x.shape[2:]))
    outputs = walker.define(net, weights, resolved, options, inp)
    compared = validate.mark_comparable(net, set(expected))
    for out in outputs:
        net.mark_output(out)
    got = backend.runner_for(net).run({"images": x.numpy()})
    rows = [validate.compare(n, got[n], expected[n], tolerance) for n in compared]
    rows += [validate.compare(f"output {i}", got[out.name], expected[f"__output__{i or ''}"], tolerance)
             for i, out in enumerate(outputs) if f"__output__{i or ''}" in expected]  # as `validate` does: a
    # network output the module does not give (SemanticSegment's baked class map) is checked in its own test
    bad = [r for r in rows if not r.ok]
    assert not bad, validate.format_table(rows, f"{label}{': ' if label else ''}tolerance {tolerance:g}")
    assert f"__output__{len(outputs)}" not in expected, "the module has more outputs than the network"
    return compared, expected


def parameter_count(module_class, *args, **kwargs) -> int:
    """Parameters of a module built on the meta device (no memory, no initialisation)."""
    with torch.device("meta"):
        module = module_class(*args, **kwargs)
    return sum(p.numel() for p in module.parameters())


def random_input(shape, seed: int = 0) -> torch.Tensor:
    return torch.from_numpy(np.random.default_rng(seed).standard_normal(shape, dtype=np.float32))
