"""YOLO26's dense heads (zoo/yolo/blocks/dense.py: SemanticSegment, Depth) on tiny inputs: every named tensor of the
network against the reference module at FP32 1e-4 on the reference backend and on ONNX Runtime; the reference
modules against an independent functional reading of upstream's computation; the baked class map against PyTorch's
argmax of the upsampled logits; the facts read back from the weights."""
from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from wts.weight_map import WeightMap
from zoo.engine import validate
from zoo.engine.backends import ReferenceBackend
from zoo.engine.model import randomize_batchnorm, state_dict_arrays
from zoo.engine.onnx.backend import OnnxBackend
from zoo.trt_api import trt
from zoo.yolo.blocks.dense import class_map_reference, head_facts
from zoo.yolo.registry import lookup

PREFIX = "model.3"
BACKENDS = [ReferenceBackend, OnnxBackend]


class Wrapped(torch.nn.Module):
    """The head under `model.3`, as a table row puts it, fed a list of feature maps."""

    def __init__(self, head):
        super().__init__()
        self.model = torch.nn.ModuleDict({"3": head})

    def forward(self, xs):
        return self.model["3"](list(xs))


def random_head(name: str, args: list, seed: int = 0) -> torch.nn.Module:
    torch.manual_seed(seed)
    module = Wrapped(lookup(name, "test").module(*args))
    for m in module.modules():
        if isinstance(m, (torch.nn.Conv2d, torch.nn.ConvTranspose2d)):
            torch.nn.init.normal_(m.weight, std=(1.0 / m.weight[0].numel()) ** 0.5)
            if m.bias is not None:
                torch.nn.init.normal_(m.bias, std=0.3)
    randomize_batchnorm(module, torch.Generator().manual_seed(seed + 1))
    return module.eval()


def features(channels, size: int, seed: int = 2):
    """P3, P4, ... of a size x size input: (1, c, size/8, size/8), (1, c, size/16, size/16) ..."""
    g = torch.Generator().manual_seed(seed)
    return [torch.randn(2, c, size // 8 >> i, size // 8 >> i, generator=g) for i, c in enumerate(channels)]


def run_head(name: str, args: list, module, xs, backend):
    """(rows, outputs by network name, compared names) of the head's network."""
    expected = validate.reference_outputs(module, xs)
    weights = WeightMap(state_dict_arrays(module), "head")
    net = ReferenceBackend().create_network()
    inputs = [net.add_input(f"p{i}", trt.float32, (-1, *x.shape[1:])) for i, x in enumerate(xs)]
    outs = lookup(name, "test").build(net, weights, PREFIX, inputs, *args)
    compared = validate.mark_comparable(net, set(expected))
    for out in outs:
        if out.name not in compared:
            net.mark_output(out)
    got = backend().runner_for(net).run({f"p{i}": x.numpy() for i, x in enumerate(xs)})
    rows = [validate.compare(n, got[n], expected[n], 1e-4) for n in compared]
    assert weights.unused() == [], weights.unused()
    return rows, {out.name: got[out.name] for out in outs}, compared


def assert_rows(rows, at_least: int):
    assert len(rows) >= at_least, [r.name for r in rows]
    bad = [r for r in rows if not r.ok]
    assert not bad, validate.format_table(rows, "tolerance 1e-4")


def functional_semantic(module, xs):
    """Upstream's eval computation written with torch.nn.functional from the state_dict alone."""
    sd = module.state_dict()
    p = f"{PREFIX}.classifier"
    w = sd[f"{p}.0.conv.weight"]
    y = F.conv2d(xs[0], w, padding=1)
    y = F.batch_norm(y, sd[f"{p}.0.bn.running_mean"], sd[f"{p}.0.bn.running_var"], sd[f"{p}.0.bn.weight"],
                     sd[f"{p}.0.bn.bias"], eps=1e-3)
    return F.conv2d(F.silu(y), sd[f"{p}.1.weight"], sd[f"{p}.1.bias"])


@pytest.mark.parametrize("backend", BACKENDS, ids=["reference", "onnxruntime"])
def test_semantic_segment_head(backend):
    args = [5, [16, 24]]
    module = random_head("SemanticSegment", args)
    xs = features([16, 24], 64)
    rows, outs, compared = run_head("SemanticSegment", args, module, xs, backend)
    assert_rows(rows, 4)
    assert PREFIX in compared and f"{PREFIX}.classifier.0" in compared
    with torch.no_grad():
        logits = functional_semantic(module, xs)
    torch.testing.assert_close(torch.as_tensor(outs[PREFIX]).float(), logits, atol=1e-4, rtol=1e-4)
    classes = torch.as_tensor(outs[f"{PREFIX}.classes"])
    assert classes.dtype == torch.uint8 and tuple(classes.shape) == (2, 64, 64)
    expected = class_map_reference(logits)
    # pixels whose two best upsampled logits are closer than the arithmetic's error may go either way
    top2 = F.interpolate(logits, scale_factor=8, mode="bilinear", align_corners=False).topk(2, 1).values
    clear = (top2[:, 0] - top2[:, 1]) > 1e-4
    assert clear.float().mean() > 0.99
    assert torch.equal(classes[clear], expected[clear])
    assert len(torch.unique(expected)) > 1  # the map is not one class everywhere


def test_semantic_single_class_is_a_sign():
    args = [1, [8, 8]]
    module = random_head("SemanticSegment", args, seed=3)
    xs = features([8, 8], 32)
    rows, outs, _ = run_head("SemanticSegment", args, module, xs, ReferenceBackend)
    assert_rows(rows, 4)
    with torch.no_grad():
        up = F.interpolate(module(xs), scale_factor=8, mode="bilinear", align_corners=False)[:, 0]
    classes = torch.as_tensor(outs[f"{PREFIX}.classes"])
    clear = up.abs() > 1e-4
    assert torch.equal(classes[clear], (up > 0).to(torch.uint8)[clear]) and 0 < classes.float().mean() < 1


def functional_depth(module, xs):
    """Upstream's Depth eval (and export) computation, functional, from the state_dict alone."""
    sd = {k[len(PREFIX) + 1:]: v for k, v in module.state_dict().items()}

    def conv_bn_silu(x, p, k):
        y = F.conv2d(x, sd[f"{p}.conv.weight"], padding=k // 2)
        y = F.batch_norm(y, sd[f"{p}.bn.running_mean"], sd[f"{p}.bn.running_var"], sd[f"{p}.bn.weight"],
                         sd[f"{p}.bn.bias"], eps=1e-3)
        return F.silu(y)

    feats = [conv_bn_silu(x, f"proj.{i}", 1) for i, x in enumerate(xs)]
    out = feats[-1]
    for i in reversed(range(len(xs) - 1)):
        out = F.interpolate(out, size=feats[i].shape[-2:], mode="bilinear", align_corners=True) + feats[i]
        out = conv_bn_silu(conv_bn_silu(out, f"refine.{i}.0", 3), f"refine.{i}.1", 3)
    out = conv_bn_silu(out, "head.0", 3)
    out = F.conv_transpose2d(out, sd["head.1.weight"], sd["head.1.bias"], stride=2)
    out = F.conv2d(conv_bn_silu(out, "head.2", 3), sd["head.3.weight"], sd["head.3.bias"])
    depth = torch.exp(sd["cal_a"] * out.clamp(-4, 5) + sd["cal_b"])
    return depth, F.interpolate(depth, size=tuple(4 * s for s in depth.shape[-2:]), mode="bilinear",
                                align_corners=True)


@pytest.mark.parametrize("backend", BACKENDS, ids=["reference", "onnxruntime"])
def test_depth_head(backend):
    args = [16, [8, 16, 24]]
    module = random_head("Depth", args)
    with torch.no_grad():  # a calibration that is not the identity, so a missing one shows
        module.model["3"].cal_a.fill_(0.9)
        module.model["3"].cal_b.fill_(0.2)
        module.model["3"].head[3].bias.fill_(1.0)
    xs = features([8, 16, 24], 64)
    rows, outs, compared = run_head("Depth", args, module, xs, backend)
    assert_rows(rows, 12)
    assert {f"{PREFIX}.refine.0", f"{PREFIX}.refine.1", f"{PREFIX}.head.1", PREFIX} <= set(compared)
    with torch.no_grad():
        quarter, full = functional_depth(module, xs)
    torch.testing.assert_close(torch.as_tensor(outs[PREFIX]), quarter, atol=1e-4, rtol=1e-4)
    torch.testing.assert_close(torch.as_tensor(outs[f"{PREFIX}.full"]), full, atol=1e-4, rtol=1e-4)
    assert tuple(full.shape) == (2, 1, 64, 64)


def test_head_facts_from_weights():
    sem = random_head("SemanticSegment", [7, [16, 24]])
    arrays = {k: v.reshape(-1) for k, v in state_dict_arrays(sem).items()}
    table, args = {"nc": 19}, [19]
    assert head_facts("SemanticSegment", args, table, arrays, PREFIX)["nc"] == 7 and args == ["nc"]
    deep = random_head("Depth", [32, [8, 16, 24]])
    arrays = {k: v.reshape(-1) for k, v in state_dict_arrays(deep).items()}
    args = [256]
    assert head_facts("Depth", args, {}, arrays, PREFIX) == {} and args == [32]
    assert head_facts("Depth", [256], {}, {}, PREFIX) is None
    assert head_facts("SemanticSegment", [19], {}, arrays, PREFIX) is None
