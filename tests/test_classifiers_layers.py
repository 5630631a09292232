"""The classifier zoo's new ops (layers/pooling.py, shuffle.py, transformer.py, inception.py, heads, the rank-n
linear, ceil-mode pooling) and the reference backend's normalization layer, against torch.nn.functional or an
independently written torch expression, at FP32 1e-4 relative to max(1, max|ref|)."""
from __future__ import annotations

import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F

import layers
from wts.weight_map import WeightMap
from zoo.trt_api import trt
from zoo.engine.reference.executor import ReferenceExecutor
from zoo.engine.reference.network import INetworkDefinition, NetworkError


def _close(got, expected, tol=1e-4):
    assert got.shape == expected.shape, (got.shape, expected.shape)
    torch.testing.assert_close(got, expected, rtol=0, atol=tol * max(1.0, expected.abs().max().item()))


def _run(build, x: torch.Tensor, dynamic_batch: bool = True) -> torch.Tensor:
    """Define a one-input network with `build(net, x_tensor) -> tensor`, run it on x."""
    net = INetworkDefinition()
    shape = (-1, *x.shape[1:]) if dynamic_batch else tuple(x.shape)
    out = build(net, net.add_input("x", trt.float32, shape))
    net.mark_output(out)
    return ReferenceExecutor(net).run({"x": x.numpy()})[out.name]


def _randn(*shape, seed=0):
    return torch.randn(*shape, generator=torch.Generator().manual_seed(seed))


@pytest.mark.parametrize("size, out", [((7, 7), (7, 7)), ((8, 12), (4, 3)), ((2, 2), (7, 7)), ((5, 9), (3, 4)),
                                       ((1, 1), (6, 6)), ((13, 13), (6, 6))])
def test_adaptive_avg_pool_equals_torch(size, out):
    x = _randn(2, 3, *size)
    got = _run(lambda net, t: layers.adaptive_avg_pool(net, t, "pool", out), x)
    _close(got, F.adaptive_avg_pool2d(x, out))


@pytest.mark.parametrize("channels, groups", [(8, 2), (12, 3), (116, 2)])
def test_channel_shuffle_equals_the_view_transpose_definition(channels, groups):
    x = _randn(2, channels, 3, 5)
    n, c, h, w = x.shape
    expected = x.reshape(n, groups, c // groups, h, w).permute(0, 2, 1, 3, 4).reshape(n, c, h, w)
    got = _run(lambda net, t: layers.channel_shuffle(net, t, groups, "shuffle"), x)
    assert torch.equal(got, expected)


def test_channel_split_equals_chunk_with_a_dynamic_batch():
    x = _randn(3, 10, 4, 4)
    for part in range(2):
        got = _run(lambda net, t: layers.channel_split(net, t, "split")[part], x)
        assert torch.equal(got, x.chunk(2, dim=1)[part])
    with pytest.raises(ValueError, match="7 channels do not split into 2"):
        _run(lambda net, t: layers.channel_split(net, t, "split")[0], _randn(1, 7, 2, 2))


@pytest.mark.parametrize("shape", [(2, 5, 16), (2, 3, 4, 8)])
def test_layer_norm_equals_f_layer_norm(shape):
    x = _randn(*shape) * 3 + 1
    c = shape[-1]
    w, b = _randn(c, seed=1), _randn(c, seed=2)
    weights = WeightMap({"ln.weight": w.numpy(), "ln.bias": b.numpy()})
    got = _run(lambda net, t: layers.layer_norm(net, weights, "ln", t, eps=1e-6), x)
    _close(got, F.layer_norm(x, (c,), w, b, eps=1e-6))


def test_layer_norm_2d_normalizes_channels_of_nchw():
    x = _randn(2, 6, 3, 5) * 2
    w, b = _randn(6, seed=1), _randn(6, seed=2)
    weights = WeightMap({"ln.weight": w.numpy(), "ln.bias": b.numpy()})
    got = _run(lambda net, t: layers.layer_norm_2d(net, weights, "ln", t, eps=1e-6), x)
    mean, var = x.mean(1, keepdim=True), x.var(1, unbiased=False, keepdim=True)  # written out, not F.layer_norm
    _close(got, (x - mean) / torch.sqrt(var + 1e-6) * w.view(1, 6, 1, 1) + b.view(1, 6, 1, 1))


def test_reference_normalization_layer_semantics():
    """TensorRT's formula on any axes: (x - mean) / sqrt(var + eps) * S + B, biased variance, eps default 1e-5;
    S and B need the input's rank."""
    x = _randn(2, 4, 3, 3)
    net = INetworkDefinition()
    t = net.add_input("x", trt.float32, (2, 4, 3, 3))
    scale = layers.constant(net, np.full((1, 4, 1, 1), 2.0, np.float32), "s")
    bias = layers.constant(net, np.full((1, 4, 1, 1), 0.5, np.float32), "b")
    layer = net.add_normalization(t, scale, bias, (1 << 2) | (1 << 3))  # instance-norm axes
    assert layer.epsilon == pytest.approx(1e-5) and layer.num_groups == 1 and not layer.is_v2
    net.mark_output(layers.named(layer, "y"))
    got = ReferenceExecutor(net).run({"x": x.numpy()})["y"]
    _close(got, F.instance_norm(x, eps=1e-5) * 2 + 0.5)
    bad = INetworkDefinition()
    t = bad.add_input("x", trt.float32, (2, 4))
    flat = layers.constant(bad, np.ones(4, np.float32), "s")
    with pytest.raises(NetworkError, match="needs the input's rank"):
        _ = bad.add_normalization(t, flat, flat, 1 << 1).get_output(0).shape


@pytest.mark.parametrize("heads, tokens, dim", [(4, 5, 32), (3, 7, 24)])
def test_multi_head_attention_equals_nn_multihead_attention(heads, tokens, dim):
    torch.manual_seed(0)
    mha = torch.nn.MultiheadAttention(dim, heads, batch_first=True).eval()
    with torch.no_grad():
        mha.in_proj_bias.normal_()
        mha.out_proj.bias.normal_()
    weights = WeightMap({f"attn.{k}": v.numpy() for k, v in mha.state_dict().items()})
    x = _randn(2, tokens, dim)
    got = _run(lambda net, t: layers.multi_head_attention(net, weights, "attn", t, heads), x)
    with torch.no_grad():
        expected, _ = mha(x, x, x, need_weights=False)
    _close(got, expected)
    assert weights.unused() == []


def test_linear_on_rank_3_and_4_inputs_equals_f_linear():
    w, b = _randn(6, 8, seed=1), _randn(6, seed=2)
    weights = WeightMap({"fc.weight": w.numpy(), "fc.bias": b.numpy()})
    for shape in ((2, 5, 8), (2, 3, 4, 8)):
        x = _randn(*shape)
        _close(_run(lambda net, t: layers.linear(net, weights, "fc", t, 6), x), F.linear(x, w, b))


def test_token_and_prepend_token_with_a_dynamic_batch():
    x = _randn(3, 4, 5)
    _close(_run(lambda net, t: layers.token(net, t, 2, "tok"), x), x[:, 2])
    value = _randn(1, 1, 5, seed=3).numpy()
    image = _randn(3, 3, 8, 8)

    def build(net, t):  # the tokens are a function of the image here: [N, 3*8*8] -> [N, 4, 48]
        tokens = layers.reshape(net, t, (0, 4, 48), "tokens")
        return layers.prepend_token(net, tokens, np.tile(value, (1, 1, 48 // 5 + 1))[..., :48], t, "cls")

    got = _run(build, image)
    expected_token = torch.from_numpy(np.tile(value, (1, 1, 48 // 5 + 1))[..., :48]).expand(3, 1, 48)
    _close(got, torch.cat([expected_token, image.reshape(3, 4, 48)], 1))


@pytest.mark.parametrize("size, k, s, p", [(32, 3, 2, 0), (15, 3, 2, 0), (14, 2, 2, 0), (9, 3, 1, 1)])
def test_max_pool_ceil_mode_equals_torch(size, k, s, p):
    x = _randn(1, 2, size, size)
    got = _run(lambda net, t: layers.max_pool(net, t, "pool", k, s, p, ceil_mode=True), x)
    _close(got, F.max_pool2d(x, k, s, p, ceil_mode=True))


def test_transform_input_and_basic_conv2d():
    x = _randn(2, 3, 6, 6)
    mean, std = torch.tensor([0.485, 0.456, 0.406]), torch.tensor([0.229, 0.224, 0.225])
    expected = (x * std.view(1, 3, 1, 1) + mean.view(1, 3, 1, 1) - 0.5) / 0.5  # un-normalise, then (x - .5) / .5
    _close(_run(lambda net, t: layers.transform_input(net, t, mean.tolist(), std.tolist()), x), expected)
    conv, bn = torch.nn.Conv2d(3, 5, 3, padding=1, bias=False), torch.nn.BatchNorm2d(5, eps=1e-3).eval()
    with torch.no_grad():
        bn.running_mean.normal_()
        bn.running_var.uniform_(0.5, 2)
    state = {**{f"b.conv.{k}": v for k, v in conv.state_dict().items()},
             **{f"b.bn.{k}": v for k, v in bn.state_dict().items()}}
    weights = WeightMap({k: v.float().numpy() for k, v in state.items()})
    with torch.no_grad():
        _close(_run(lambda net, t: layers.basic_conv2d(net, weights, "b", t, 3, 1, 1), x), F.relu(bn(conv(x))))


def test_conv_bn_with_a_convolution_bias_folds_it_in_fp16():
    """VGG-BN convolutions carry a bias: FP32 builds conv(+bias) then BN; FP16 folds bias into the BN shift."""
    from layers.precision import Precision
    conv, bn = torch.nn.Conv2d(3, 4, 3, padding=1), torch.nn.BatchNorm2d(4).eval()
    with torch.no_grad():
        conv.bias.normal_()
        bn.running_mean.normal_()
    state = {**{f"c.{k}": v for k, v in conv.state_dict().items()}, **{f"n.{k}": v for k, v in bn.state_dict().items()}}
    x = _randn(1, 3, 5, 5)
    with torch.no_grad():
        expected = bn(conv(x))
    for mode, tol in (("fp32", 1e-4), ("fp16", 1e-2)):
        weights = WeightMap({k: v.float().numpy() for k, v in state.items()})
        weights.precision = Precision(mode)
        dtype = trt.float32 if mode == "fp32" else trt.float16
        net = INetworkDefinition()
        t = net.add_input("x", dtype, (1, 3, 5, 5))
        y = layers.conv_bn(net, weights, "c", "n", t, 4, 3, 1, 1, bias=True)
        net.mark_output(y)
        got = ReferenceExecutor(net).run({"x": x.numpy().astype(np.float16 if mode == "fp16" else np.float32)})
        _close(got[y.name].float(), expected, tol)


def test_averaging_matrix_rows_are_torchs_bins():
    from layers.pooling import averaging_matrix
    p = averaging_matrix(5, 3)  # bins [0, 2), [1, 4), [3, 5)
    assert np.allclose(p.sum(1), 1)
    assert [tuple(np.nonzero(r)[0]) for r in p] == [(0, 1), (1, 2, 3), (3, 4)]
    assert math.isclose(p[1, 1], 1 / 3, rel_tol=1e-6)


def test_linear_runs_fused_as_one_step_and_equals_the_unfused_layers():
    w, b = _randn(6, 8, seed=1), _randn(6, seed=2)
    weights = WeightMap({"fc.weight": w.numpy(), "fc.bias": b.numpy()})
    net = INetworkDefinition()
    t = net.add_input("x", trt.float32, (-1, 5, 8))
    net.mark_output(layers.linear(net, weights, "fc", t, 6))
    executor = ReferenceExecutor(net)
    assert "IMatrixMultiplyLayer" not in [type(s).__name__ for s in executor._fused]
    x = _randn(3, 5, 8)
    fused = executor.run({"x": x.numpy()})["fc"]
    _close(fused, executor.run({"x": x.numpy()}, capture=True)["fc"])
    _close(fused, F.linear(x, w, b))
