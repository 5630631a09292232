"""The reference backend's IDeconvolutionLayer against the definition of a transposed convolution (a scatter loop
written here) and against torch.nn.ConvTranspose2d: kernel layout (in, out / groups, kh, kw) as TensorRT's (ONNX
ConvTranspose's), output size (I - 1) * S + D * (K - 1) + 1 - pre - post, groups, dilation, bias, FP16, dynamic batch,
serialisation."""
import numpy as np
import pytest
import torch

from zoo.trt_api import trt
from zoo.engine.reference.executor import ReferenceExecutor
from zoo.engine.reference.network import INetworkDefinition, NetworkError
from zoo.engine.reference.serialize import dumps, loads


def scatter_definition(x, w, b, stride, pre, post, dilation, groups):
    """y[n, o, i*s + k*d - pre] += x[n, c, i] * w[c, o', k], per group; then the post padding cropped."""
    n, cin, h, wd = x.shape
    _, per_group, kh, kw = w.shape
    cout = per_group * groups
    full_h = (h - 1) * stride[0] + dilation[0] * (kh - 1) + 1
    full_w = (wd - 1) * stride[1] + dilation[1] * (kw - 1) + 1
    y = np.zeros((n, cout, full_h, full_w), np.float64)
    cin_g = cin // groups
    for c in range(cin):
        g = c // cin_g
        for o in range(per_group):
            for ki in range(kh):
                for kj in range(kw):
                    rows = np.arange(h) * stride[0] + ki * dilation[0]
                    cols = np.arange(wd) * stride[1] + kj * dilation[1]
                    y[:, g * per_group + o][:, rows[:, None], cols[None, :]] += x[:, c] * w[c, o, ki, kj]
    if b is not None:
        y += b.reshape(1, -1, 1, 1)
    return y[:, :, pre[0]:full_h - post[0], pre[1]:full_w - post[1]]


CASES = [  # cin, cout, kernel, stride, pre, post, dilation, groups, bias
    (4, 6, (2, 2), (2, 2), (0, 0), (0, 0), (1, 1), 1, True),    # YOLOv8's Proto upsample
    (3, 2, (3, 3), (2, 2), (1, 1), (1, 1), (1, 1), 1, False),
    (4, 4, (3, 2), (1, 2), (0, 1), (2, 0), (2, 1), 2, True),
    (6, 3, (4, 4), (2, 2), (1, 1), (1, 1), (1, 1), 3, True),
]


def _network(x_shape, dtype=trt.float32):
    net = INetworkDefinition()
    return net, net.add_input("x", dtype, x_shape)


@pytest.mark.parametrize("case", CASES, ids=[f"deconv{i}" for i in range(len(CASES))])
def test_deconvolution_matches_the_definition(case):
    cin, cout, k, stride, pre, post, dilation, groups, bias = case
    g = torch.Generator().manual_seed(len(str(case)))
    x = torch.randn(2, cin, 5, 4, generator=g)
    w = torch.randn(cin, cout // groups, *k, generator=g)
    b = torch.randn(cout, generator=g) if bias else None
    net, t = _network((-1, cin, 5, 4))
    layer = net.add_deconvolution_nd(t, cout, k, w.numpy(), None if b is None else b.numpy())
    layer.stride_nd, layer.pre_padding, layer.post_padding = stride, pre, post
    layer.dilation_nd, layer.num_groups = dilation, groups
    layer.name = layer.get_output(0).name = "deconv"
    net.mark_output(layer.get_output(0))
    got = ReferenceExecutor(net).run({"x": x})["deconv"]
    want = scatter_definition(x.double().numpy(), w.double().numpy(), None if b is None else b.double().numpy(),
                              stride, pre, post, dilation, groups)
    assert tuple(layer.get_output(0).shape) == (-1, cout, *want.shape[2:])
    np.testing.assert_allclose(got.numpy(), want, rtol=1e-4, atol=1e-4)


def test_deconvolution_equals_conv_transpose2d_fp16_and_survives_serialisation():
    torch.manual_seed(0)
    module = torch.nn.ConvTranspose2d(8, 8, 2, 2, 0, bias=True).eval()
    x = torch.randn(3, 8, 6, 7)
    net, t = _network((-1, 8, 6, 7), trt.float16)
    layer = net.add_deconvolution_nd(t, 8, (2, 2), module.weight.detach().half().numpy(),
                                     module.bias.detach().half().numpy())
    layer.stride_nd = (2, 2)
    layer.name = layer.get_output(0).name = "up"
    net.mark_output(layer.get_output(0))
    assert layer.get_output(0).dtype == trt.float16
    with torch.no_grad():
        want = module.half().float()(x.half().float())
    got = ReferenceExecutor(net).run({"x": x.half()})["up"]
    torch.testing.assert_close(got.float(), want, rtol=1e-2, atol=1e-2)
    again = ReferenceExecutor(loads(dumps(net))).run({"x": x.half()})["up"]
    torch.testing.assert_close(again, got)


def test_deconvolution_errors_name_the_layer():
    net, t = _network((1, 4, 3, 3))
    layer = net.add_deconvolution_nd(t, 6, (2, 2), np.zeros(10, np.float32))
    layer.name = "model.22.proto.upsample"
    with pytest.raises(NetworkError, match=r"model\.22\.proto\.upsample.*10 values.*4x6x2x2 = 96"):
        layer.get_output(0).shape
    net, t = _network((1, 4, 3, 3))
    layer = net.add_deconvolution_nd(t, 6, (2, 2), np.zeros(96, np.float32))
    layer.padding_mode = trt.PaddingMode.SAME_UPPER
    with pytest.raises(NotImplementedError, match="padding_mode"):
        layer.get_output(0).shape
