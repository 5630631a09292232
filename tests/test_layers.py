"""layers/ on the reference backend against the PyTorch modules they mirror, weights from the modules' state_dicts.

Each test builds a network with a layers/ function, loads the weights through a WeightMap made from a torch module's
state_dict (BatchNorm with randomized running statistics), runs it with ReferenceExecutor and compares with the
module's eval-mode output (FP32 tolerance 1e-4). Layer and tensor names are checked against the naming contract:
the layer that uses `<prefix>.weight` is `<prefix>`, and a block's output tensor is named by the block's prefix.
"""
from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn as nn

import layers
from wts.weight_map import WeightError, WeightMap
from zoo.trt_api import trt
from zoo.engine.reference.executor import ReferenceExecutor
from zoo.engine.reference.network import INetworkDefinition

TOL = dict(rtol=1e-4, atol=1e-4)


# ----------------------------------------------------------------------------------------------------------------
# PyTorch references, written here (the attribute names are the state_dict contract of YOLOv5's models/common.py)


class Conv(nn.Module):
    def __init__(self, c1, c2, k=1, s=1, p=None, g=1, act="silu", eps=1e-3):
        super().__init__()
        self.conv = nn.Conv2d(c1, c2, k, s, k // 2 if p is None else p, groups=g, bias=False)
        self.bn = nn.BatchNorm2d(c2, eps=eps)
        self.act = {"silu": nn.SiLU(), "relu": nn.ReLU(), "sigmoid": nn.Sigmoid(), "leaky_relu": nn.LeakyReLU(0.1),
                    "tanh": nn.Tanh(), "gelu": nn.GELU()}[act]

    def forward(self, x):
        return self.act(self.bn(self.conv(x)))


class Bottleneck(nn.Module):
    def __init__(self, c1, c2, shortcut=True, e=0.5):
        super().__init__()
        c_ = int(c2 * e)
        self.cv1 = Conv(c1, c_, 1, 1)
        self.cv2 = Conv(c_, c2, 3, 1)
        self.add = shortcut and c1 == c2

    def forward(self, x):
        return x + self.cv2(self.cv1(x)) if self.add else self.cv2(self.cv1(x))


class C3(nn.Module):
    def __init__(self, c1, c2, n=1, shortcut=True, e=0.5):
        super().__init__()
        c_ = int(c2 * e)
        self.cv1 = Conv(c1, c_, 1, 1)
        self.cv2 = Conv(c1, c_, 1, 1)
        self.cv3 = Conv(2 * c_, c2, 1)
        self.m = nn.Sequential(*(Bottleneck(c_, c_, shortcut, e=1.0) for _ in range(n)))

    def forward(self, x):
        return self.cv3(torch.cat((self.m(self.cv1(x)), self.cv2(x)), 1))


class SPPF(nn.Module):
    def __init__(self, c1, c2, k=5):
        super().__init__()
        c_ = c1 // 2
        self.cv1 = Conv(c1, c_, 1, 1)
        self.cv2 = Conv(c_ * 4, c2, 1, 1)
        self.m = nn.MaxPool2d(kernel_size=k, stride=1, padding=k // 2)

    def forward(self, x):
        x = self.cv1(x)
        y1 = self.m(x)
        y2 = self.m(y1)
        return self.cv2(torch.cat((x, y1, y2, self.m(y2)), 1))


def randomize(module: nn.Module, seed: int = 0) -> nn.Module:
    """Random weights and BatchNorm statistics (running_mean ~ N(0, 0.5), running_var ~ U(0.5, 2)); eval mode."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for m in module.modules():
            if isinstance(m, (nn.BatchNorm1d, nn.BatchNorm2d)):
                m.weight.copy_(torch.rand(m.weight.shape, generator=g) + 0.5)
                m.bias.copy_(torch.randn(m.bias.shape, generator=g) * 0.2)
                m.running_mean.copy_(torch.randn(m.running_mean.shape, generator=g) * 0.5)
                m.running_var.copy_(torch.rand(m.running_var.shape, generator=g) * 1.5 + 0.5)
            elif isinstance(m, (nn.Conv2d, nn.Linear)):
                m.weight.copy_(torch.randn(m.weight.shape, generator=g) * (1.0 / m.weight[0].numel()) ** 0.5)
                if m.bias is not None:
                    m.bias.copy_(torch.randn(m.bias.shape, generator=g) * 0.1)
    return module.eval()


def weight_map(module: nn.Module, prefix: str = "", flat: bool = False, source: str = "test.pt") -> WeightMap:
    """A WeightMap of the module's state_dict; `flat` stores every array 1-D, as a .wts file does."""
    sd = module.state_dict()
    return WeightMap({prefix + k: (v.numpy().reshape(-1) if flat else v.numpy()) for k, v in sd.items()}, source)


def rand(*shape, seed=0):
    return torch.randn(*shape, generator=torch.Generator().manual_seed(seed))


def build_and_run(x: torch.Tensor, build, dtype=None, input_shape=None):
    """build(net, weights-less input tensor) -> output tensor; returns (output, network, executor results)."""
    net = INetworkDefinition()
    t = net.add_input("images", dtype or trt.float32, input_shape or tuple(x.shape))
    out = build(net, t)
    net.mark_output(out)
    results = ReferenceExecutor(net).run({"images": x}, capture=True)
    y = results[out.name]
    assert len(out.shape) == y.dim() and all(d in (-1, n) for d, n in zip(out.shape, y.shape)), \
        f"executed shape {tuple(y.shape)}, inferred {tuple(out.shape)}"
    return y, net, results


def layer_names(net) -> list[str]:
    return [net.get_layer(i).name for i in range(net.num_layers)]


def torch_out(module, x):
    with torch.no_grad():
        return module(x)


# ----------------------------------------------------------------------------------------------------------------
# core ops


@pytest.mark.parametrize("batch", [1, 3])
@pytest.mark.parametrize("cfg", [
    dict(c1=3, c2=8, k=3, s=1, p=1, g=1, d=1, bias=True), dict(c1=4, c2=6, k=3, s=2, p=1, g=2, d=1, bias=False),
    dict(c1=6, c2=6, k=5, s=1, p=4, g=6, d=2, bias=True), dict(c1=3, c2=5, k=1, s=1, p=0, g=1, d=1, bias=True),
    dict(c1=3, c2=4, k=(3, 1), s=(2, 1), p=(1, 0), g=1, d=1, bias=True)], ids=lambda c: "conv-" + "-".join(
        f"{k}{v}" for k, v in c.items()))
@pytest.mark.parametrize("flat", [False, True], ids=["shaped", "flat"])
def test_conv2d(cfg, batch, flat):
    m = randomize(nn.Conv2d(cfg["c1"], cfg["c2"], cfg["k"], cfg["s"], cfg["p"], dilation=cfg["d"], groups=cfg["g"],
                            bias=cfg["bias"]))
    w = weight_map(m, "model.0.", flat=flat)
    x = rand(batch, cfg["c1"], 11, 9, seed=1)
    y, net, _ = build_and_run(x, lambda net, t: layers.conv2d(net, w, "model.0", t, cfg["c2"], cfg["k"], cfg["s"],
                                                              cfg["p"], cfg["g"], cfg["d"], bias=cfg["bias"]))
    torch.testing.assert_close(y, torch_out(m, x), **TOL)
    assert layer_names(net) == ["model.0"] and net.get_layer(0).get_output(0).name == "model.0"
    assert w.unused() == []


@pytest.mark.parametrize("eps", [1e-5, 1e-3, 0.1])
@pytest.mark.parametrize("shape", [(1, 4, 5, 5), (3, 7, 2, 9)])
def test_batch_norm(eps, shape):
    m = randomize(nn.BatchNorm2d(shape[1], eps=eps), seed=2)
    w = weight_map(m, "bn.")
    x = rand(*shape, seed=3)
    y, net, _ = build_and_run(x, lambda net, t: layers.batch_norm(net, w, "bn", t, eps))
    torch.testing.assert_close(y, torch_out(m, x), **TOL)
    assert layer_names(net) == ["bn"]
    assert w.unused() == []  # num_batches_tracked is never needed


def test_batch_norm_uses_eps():
    """A wrong eps must show: with running_var small, eps 1e-5 and 1e-1 differ far beyond the tolerance."""
    m = randomize(nn.BatchNorm2d(3, eps=0.1), seed=4)
    with torch.no_grad():
        m.running_var.fill_(0.01)
    x = rand(1, 3, 4, 4, seed=5)
    y, _, _ = build_and_run(x, lambda net, t: layers.batch_norm(net, weight_map(m, "bn."), "bn", t, 1e-5))
    assert not torch.allclose(y, torch_out(m, x), **TOL)


@pytest.mark.parametrize("kind,module", [("relu", nn.ReLU()), ("sigmoid", nn.Sigmoid()), ("tanh", nn.Tanh()),
                                         ("leaky_relu", nn.LeakyReLU(0.1)), ("silu", nn.SiLU()),
                                         ("gelu", nn.GELU())])
@pytest.mark.parametrize("shape", [(1, 3, 5, 5), (3, 7)])
def test_activation(kind, module, shape):
    x = rand(*shape, seed=6) * 3
    alpha = 0.1 if kind == "leaky_relu" else 0.0
    y, net, _ = build_and_run(x, lambda net, t: layers.activation(net, t, kind, "model.1.act", alpha=alpha))
    torch.testing.assert_close(y, torch_out(module, x), **TOL)
    assert layer_names(net)[-1] == "model.1.act"
    if kind == "silu":  # x * sigmoid(x): the helper layer is named under the activation's name
        assert layer_names(net) == ["model.1.act/sigmoid", "model.1.act"]


def test_activation_unknown_kind():
    net = INetworkDefinition()
    t = net.add_input("x", trt.float32, (1, 2))
    with pytest.raises(ValueError, match="unknown activation 'mish'"):
        layers.activation(net, t, "mish", "a")


@pytest.mark.parametrize("batch", [1, 3])
@pytest.mark.parametrize("window,stride,padding", [(2, None, 0), (3, 2, 1), (5, 1, 2), (3, None, 1), (2, 1, 0)])
def test_max_pool(window, stride, padding, batch):
    x = rand(batch, 3, 9, 8, seed=7)
    y, net, _ = build_and_run(x, lambda net, t: layers.max_pool(net, t, "pool", window, stride, padding))
    torch.testing.assert_close(y, torch_out(nn.MaxPool2d(window, stride, padding), x), **TOL)
    assert layer_names(net) == ["pool"]


@pytest.mark.parametrize("count_include_pad", [True, False])
@pytest.mark.parametrize("window,stride,padding", [(2, None, 0), (3, 2, 1), (3, 1, 1), (2, 2, 1)])
def test_avg_pool(window, stride, padding, count_include_pad):
    x = rand(3, 2, 9, 7, seed=8)
    y, _, _ = build_and_run(x, lambda net, t: layers.avg_pool(net, t, "pool", window, stride, padding,
                                                             count_include_pad=count_include_pad))
    expected = torch_out(nn.AvgPool2d(window, stride, padding, count_include_pad=count_include_pad), x)
    torch.testing.assert_close(y, expected, **TOL)


def test_global_avg_pool_and_flatten():
    x = rand(3, 5, 7, 6, seed=9)
    y, net, _ = build_and_run(x, lambda net, t: layers.flatten(net, layers.global_avg_pool(net, t, "gap"), "flat"))
    torch.testing.assert_close(y, torch.flatten(nn.AdaptiveAvgPool2d(1)(x), 1), **TOL)
    assert layer_names(net) == ["gap", "flat"]


@pytest.mark.parametrize("batch", [1, 3])
def test_flatten_dynamic_batch(batch):
    x = rand(batch, 2, 3, 5, seed=10)
    y, net, _ = build_and_run(x, lambda net, t: layers.flatten(net, t, "flat"), input_shape=(-1, 2, 3, 5))
    assert torch.equal(y, torch.flatten(x, 1))
    assert net.get_layer(0).get_output(0).shape == (-1, 30)


@pytest.mark.parametrize("bias", [True, False])
@pytest.mark.parametrize("batch", [1, 3])
def test_linear(bias, batch):
    m = randomize(nn.Linear(7, 5, bias=bias), seed=11)
    w = weight_map(m, "fc.")
    x = rand(batch, 7, seed=12)
    y, net, _ = build_and_run(x, lambda net, t: layers.linear(net, w, "fc", t, 5, bias=bias))
    torch.testing.assert_close(y, torch_out(m, x), **TOL)
    assert net.get_output(0).name == "fc" and "fc.weight" in layer_names(net)
    assert layer_names(net)[-1] == "fc"
    assert w.unused() == []


def test_classifier_head_dynamic_batch():
    """global pool -> flatten -> linear with a -1 batch, run at batch 1 and 3."""
    m = randomize(nn.Linear(4, 3), seed=13)
    w = weight_map(m, "fc.")
    net = INetworkDefinition()
    t = net.add_input("images", trt.float32, (-1, 4, 5, 5))
    out = layers.linear(net, w, "fc", layers.flatten(net, layers.global_avg_pool(net, t, "gap"), "flat"), 3)
    assert out.shape == (-1, 3)
    net.mark_output(out)
    executor = ReferenceExecutor(net)
    for batch in (1, 3):
        x = rand(batch, 4, 5, 5, seed=14)
        torch.testing.assert_close(executor.run({"images": x})["fc"], torch_out(m, x.mean((2, 3))), **TOL)


@pytest.mark.parametrize("axis", [0, 1, 2, 3])
def test_concat(axis):
    xs = [rand(2, 3, 4, 5, seed=s) for s in (15, 16)]
    net = INetworkDefinition()
    ts = [net.add_input(f"x{i}", trt.float32, (2, 3, 4, 5)) for i in range(2)]
    out = layers.concat(net, ts, "cat", axis=axis)
    net.mark_output(out)
    y = ReferenceExecutor(net).run({"x0": xs[0], "x1": xs[1]})["cat"]
    assert torch.equal(y, torch.cat(xs, axis)) and layer_names(net) == ["cat"]


@pytest.mark.parametrize("axis", [1, 2, 3])
def test_softmax(axis):
    x = rand(3, 4, 5, 6, seed=17)
    y, _, _ = build_and_run(x, lambda net, t: layers.softmax(net, t, "prob", axis=axis))
    torch.testing.assert_close(y, torch.softmax(x, axis), **TOL)


@pytest.mark.parametrize("factor", [2, 3])
@pytest.mark.parametrize("shape", [(1, 3, 4, 5), (3, 2, 7, 7)])
def test_upsample_nearest(factor, shape):
    x = rand(*shape, seed=18)
    y, net, _ = build_and_run(x, lambda net, t: layers.upsample_nearest(net, t, "model.11", factor))
    assert torch.equal(y, torch_out(nn.Upsample(scale_factor=factor, mode="nearest"), x))
    assert layer_names(net) == ["model.11"]


# ----------------------------------------------------------------------------------------------------------------
# blocks


@pytest.mark.parametrize("batch", [1, 3])
@pytest.mark.parametrize("k,s,act", [(1, 1, "silu"), (3, 2, "silu"), (6, 2, "silu"), (3, 1, "relu"),
                                     (3, 1, "leaky_relu")])
def test_conv_bn_act(k, s, act, batch):
    m = randomize(Conv(3, 8, k, s, p=2 if k == 6 else None, act=act), seed=19)
    w = weight_map(m, "model.0.")
    x = rand(batch, 3, 13, 11, seed=20)

    def build(net, t):
        if act == "leaky_relu":
            return _conv_bn_leaky(net, w, t, k, s)
        return layers.conv_bn_act(net, w, "model.0", t, 8, k, s, padding=2 if k == 6 else None, act=act)

    y, net, results = build_and_run(x, build)
    torch.testing.assert_close(y, torch_out(m, x), **TOL)
    names = layer_names(net)
    assert names[:2] == ["model.0.conv", "model.0.bn"] and names[-1] == "model.0.act"
    assert net.get_output(0).name == "model.0"  # the block's output tensor is named by the prefix
    assert w.unused() == []
    # intermediate tensors carry the module names, for the per-layer validation table
    torch.testing.assert_close(results["model.0.conv"], torch_out(m.conv, x), **TOL)
    torch.testing.assert_close(results["model.0.bn"], torch_out(nn.Sequential(m.conv, m.bn), x), **TOL)


def _conv_bn_leaky(net, w, t, k, s):
    """conv_bn_act has no slope argument; LeakyReLU(0.1) blocks are conv2d + batch_norm + activation."""
    y = layers.conv2d(net, w, "model.0.conv", t, 8, k, s, k // 2, bias=False)
    y = layers.batch_norm(net, w, "model.0.bn", y, 1e-3)
    return layers.rename(layers.activation(net, y, "leaky_relu", "model.0.act", alpha=0.1), "model.0")


def test_conv_bn_act_eps():
    m = randomize(Conv(3, 4, 3, 1, eps=1e-5), seed=21)
    x = rand(1, 3, 6, 6, seed=22)
    y, _, _ = build_and_run(x, lambda net, t: layers.conv_bn_act(net, weight_map(m, "c."), "c", t, 4, 3, eps=1e-5))
    torch.testing.assert_close(y, torch_out(m, x), **TOL)


@pytest.mark.parametrize("c1,c2,shortcut", [(8, 8, True), (8, 8, False), (6, 8, True)])
def test_bottleneck(c1, c2, shortcut):
    m = randomize(Bottleneck(c1, c2, shortcut), seed=23)
    w = weight_map(m, "model.2.m.0.")
    x = rand(3, c1, 7, 9, seed=24)
    y, net, _ = build_and_run(x, lambda net, t: layers.bottleneck(net, w, "model.2.m.0", t, c2, shortcut))
    torch.testing.assert_close(y, torch_out(m, x), **TOL)
    assert net.get_output(0).name == "model.2.m.0"
    assert ("model.2.m.0" in layer_names(net)) == m.add  # the residual add is the block's own layer
    assert w.unused() == []


@pytest.mark.parametrize("batch", [1, 3])
@pytest.mark.parametrize("c1,c2,n,shortcut", [(8, 8, 1, True), (6, 8, 2, True), (8, 4, 1, False), (4, 8, 0, True)])
def test_c3(c1, c2, n, shortcut, batch):
    m = randomize(C3(c1, c2, n, shortcut), seed=25)
    w = weight_map(m, "model.2.")
    x = rand(batch, c1, 9, 7, seed=26)
    y, net, results = build_and_run(x, lambda net, t: layers.c3(net, w, "model.2", t, c2, n, shortcut))
    torch.testing.assert_close(y, torch_out(m, x), **TOL)
    assert net.get_output(0).name == "model.2" and w.unused() == []
    names = layer_names(net)
    for part in ("model.2.cv1.conv", "model.2.cv2.conv", "model.2.cv3.conv"):
        assert part in names
    if n:
        torch.testing.assert_close(results["model.2.m"], torch_out(nn.Sequential(m.cv1, m.m), x), **TOL)
    torch.testing.assert_close(results["model.2.cv2"], torch_out(m.cv2, x), **TOL)


@pytest.mark.parametrize("batch", [1, 3])
@pytest.mark.parametrize("c1,c2,k", [(8, 8, 5), (16, 6, 3), (4, 8, 5)])
def test_sppf(c1, c2, k, batch):
    m = randomize(SPPF(c1, c2, k), seed=27)
    w = weight_map(m, "model.9.")
    x = rand(batch, c1, 7, 10, seed=28)
    y, net, results = build_and_run(x, lambda net, t: layers.sppf(net, w, "model.9", t, c2, k))
    torch.testing.assert_close(y, torch_out(m, x), **TOL)
    assert net.get_output(0).name == "model.9" and w.unused() == []
    names = layer_names(net)
    assert [n for n in names if n.startswith("model.9.m")] == ["model.9.m", "model.9.m#2", "model.9.m#3"]
    torch.testing.assert_close(results["model.9.m"], torch_out(nn.Sequential(m.cv1, m.m), x), **TOL)


def test_small_backbone_dynamic_batch():
    """Conv -> C3 -> Conv(s2) -> SPPF -> upsample -> concat, built once with a -1 batch, run at batch 1 and 3."""
    class Net(nn.Module):
        def __init__(self):
            super().__init__()
            self.model = nn.ModuleList([Conv(3, 8, 3, 2), C3(8, 8, 1), Conv(8, 16, 3, 2), SPPF(16, 16)])

        def forward(self, x):
            a = self.model[1](self.model[0](x))
            b = self.model[3](self.model[2](a))
            return torch.cat((nn.functional.interpolate(b, scale_factor=2, mode="nearest"), a), 1)

    m = randomize(Net(), seed=29)
    w = weight_map(m, source="backbone.wts", flat=True)
    net = INetworkDefinition()
    t = net.add_input("images", trt.float32, (-1, 3, 16, 12))
    a = layers.c3(net, w, "model.1", layers.conv_bn_act(net, w, "model.0", t, 8, 3, 2), 8, 1)
    b = layers.sppf(net, w, "model.3", layers.conv_bn_act(net, w, "model.2", a, 16, 3, 2), 16)
    out = layers.concat(net, [layers.upsample_nearest(net, b, "up"), a], "cat")
    assert out.shape == (-1, 24, 8, 6)
    net.mark_output(out)
    assert w.unused() == []
    executor = ReferenceExecutor(net)
    for batch in (1, 3):
        x = rand(batch, 3, 16, 12, seed=30)
        torch.testing.assert_close(executor.run({"images": x})["cat"], torch_out(m, x), **TOL)


def test_conv_bn_act_fp16():
    """FP16 input: weights are taken as FP16, BatchNorm is folded in FP32 before the cast; FP16 tolerance."""
    m = randomize(Conv(3, 8, 3, 1), seed=31)
    x = rand(3, 3, 9, 9, seed=32)
    y, net, _ = build_and_run(x.half(), lambda net, t: layers.conv_bn_act(net, weight_map(m, "c."), "c", t, 8, 3),
                              dtype=trt.float16)
    assert y.dtype == torch.float16
    assert all(net.get_layer(i).get_output(0).dtype == trt.float16 for i in range(net.num_layers))
    torch.testing.assert_close(y.float(), torch_out(m, x), rtol=1e-2, atol=1e-2)


# ----------------------------------------------------------------------------------------------------------------
# the weight map


def test_weight_map_missing_key_names_key_source_and_hint():
    w = weight_map(randomize(Conv(3, 4, 3)), "model.0.", source="yolov5n.wts")
    net = INetworkDefinition()
    t = net.add_input("x", trt.float32, (1, 3, 8, 8))
    with pytest.raises(WeightError, match=r"yolov5n\.wts: missing key 'model\.0\.conv\.bias'.*same prefix.*"
                                          r"model\.0\.conv\.weight"):
        layers.conv2d(net, w, "model.0.conv", t, 4, 3, bias=True)
    with pytest.raises(WeightError, match=r"yolov5n\.wts: missing key 'model\.7\.conv\.weight'$"):
        layers.conv2d(net, w, "model.7.conv", t, 4, 3)


def test_weight_map_wrong_count_names_key_and_shapes():
    flat = weight_map(randomize(nn.Conv2d(3, 4, 3)), "model.0.", flat=True, source="yolov5s.wts")
    net = INetworkDefinition()
    t = net.add_input("x", trt.float32, (1, 3, 8, 8))
    with pytest.raises(WeightError, match=r"yolov5s\.wts: key 'model\.0\.weight' has 108 values, the architecture "
                                          r"expects shape \(5, 3, 3, 3\) \(135 values\)"):
        layers.conv2d(net, flat, "model.0", t, 5, 3)
    shaped = weight_map(randomize(nn.Conv2d(3, 4, 3)), "model.0.", source="best.pt")
    with pytest.raises(WeightError, match=r"best\.pt: key 'model\.0\.weight' has shape \(4, 3, 3, 3\), the "
                                          r"architecture expects shape \(4, 3, 1, 1\)"):
        layers.conv2d(net, shaped, "model.0", t, 4, 1)
    # the same count in another shape is a different architecture, not a reshape
    odd = WeightMap({"k": np.zeros((6, 2), np.float32)}, "x.pt")
    with pytest.raises(WeightError, match=r"'k' has shape \(6, 2\).*\(3, 4\)"):
        odd.take("k", (3, 4))


def test_weight_map_unused_lists_keys_not_taken():
    m = randomize(Conv(3, 4, 3))
    w = weight_map(m, "model.0.")
    w._tensors["model.99.weight"] = np.zeros(3, np.float32)
    net = INetworkDefinition()
    t = net.add_input("x", trt.float32, (1, 3, 8, 8))
    layers.conv2d(net, w, "model.0.conv", t, 4, 3, padding=1, bias=False)
    assert sorted(w.unused()) == ["model.0.bn.bias", "model.0.bn.running_mean", "model.0.bn.running_var",
                                  "model.0.bn.weight", "model.99.weight"]
    assert "model.0.bn.num_batches_tracked" in w.keys()
    layers.batch_norm(net, w, "model.0.bn", net.get_layer(0).get_output(0), 1e-3)
    assert w.unused() == ["model.99.weight"]
    assert w.count("model.0.conv.weight") == 108 and "model.0.conv.weight" in w
