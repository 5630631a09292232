"""Reference engines: a network serialised with `serialize.dumps` and loaded with `loads` is the same network.

Outputs are bit-exact, names, properties, enums and weights survive, and a damaged payload is a NetworkError
(never a stray zipfile/json/KeyError, never unpickling, never importing a module outside the zoo's plugins).
"""
from __future__ import annotations

import io
import json
import zipfile

import numpy as np
import pytest
import torch

from zoo.trt_api import trt
from zoo.trt_api import plugins as ref_plugin
from zoo.engine.reference.executor import ReferenceExecutor
from zoo.engine.reference.network import INetworkDefinition, NetworkError
from zoo.engine.reference.serialize import dumps, loads


def _shift_shapes(inputs, *, amount, table):
    (x,) = inputs
    return [ref_plugin.TensorSpec(x.shape, x.dtype)]


def _shift_forward(x, *, amount, table):
    return x * torch.as_tensor(table).reshape(1, -1, 1, 1) + amount


ref_plugin.register("test::shift", shapes=_shift_shapes, forward=_shift_forward)


def rng(*shape, seed=0, dtype=np.float32):
    return np.random.default_rng(seed).standard_normal(shape).astype(dtype)


def build_network() -> INetworkDefinition:
    """FP32 stem, an FP16 middle (FP16 weights), a plugin, and most layer types, with a -1 batch."""
    net = INetworkDefinition(1 << int(trt.NetworkDefinitionCreationFlag.STRONGLY_TYPED.value))
    net.name = "serialise-me"
    x = net.add_input("images", trt.float32, (-1, 3, 12, 10))
    idx = net.add_input("index", trt.int32, (2,))

    conv = net.add_convolution_nd(x, 8, (3, 3), rng(8, 3, 3, 3, seed=1), rng(8, seed=2))
    conv.stride_nd, conv.pre_padding, conv.post_padding, conv.name = (2, 1), (1, 0), (0, 2), "model.0.conv"
    conv.metadata = "model.0.conv: Conv2d(3, 8)"
    bn = net.add_scale(conv.get_output(0), trt.ScaleMode.CHANNEL, rng(8, seed=3), rng(8, seed=4) * 0.1 + 1, None)
    bn.name = "model.0.bn"
    act = net.add_activation(bn.get_output(0), trt.ActivationType.LEAKY_RELU)
    act.alpha, act.name = 0.1, "model.0.act"
    act.get_output(0).name = "model.0"

    half = net.add_cast(act.get_output(0), trt.float16)
    half.name = "to_half"
    conv16 = net.add_convolution_nd(half.get_output(0), 6, (1, 1), rng(6, 4, 1, 1, seed=5, dtype=np.float16))
    conv16.num_groups, conv16.name = 2, "model.1.conv"
    sig = net.add_activation(conv16.get_output(0), trt.ActivationType.SIGMOID)
    silu = net.add_elementwise(conv16.get_output(0), sig.get_output(0), trt.ElementWiseOperation.PROD)
    silu.name = "model.1"
    pool = net.add_pooling_nd(silu.get_output(0), trt.PoolingType.AVERAGE, (3, 3))
    pool.stride_nd, pool.padding_nd, pool.average_count_excludes_padding = (2, 2), (1, 1), False
    up = net.add_resize(pool.get_output(0))
    up.resize_mode = trt.InterpolationMode.LINEAR
    up.coordinate_transformation = trt.ResizeCoordinateTransformation.HALF_PIXEL
    up.shape = (-1, 6, 6, 5)
    up.name = "up"
    back = net.add_cast(up.get_output(0), trt.float32)

    plug = net.add_plugin(ref_plugin.op.test.shift(back.get_output(0), amount=0.5,
                                                   table=np.arange(6, dtype=np.float32)))
    plug.name = "shift"
    cat = net.add_concatenation([plug.get_output(0), back.get_output(0)])
    cat.axis = 1
    shuffle = net.add_shuffle(cat.get_output(0))
    shuffle.first_transpose, shuffle.reshape_dims, shuffle.second_transpose = (0, 2, 3, 1), (0, -1, 12), (0, 2, 1)
    soft = net.add_softmax(shuffle.get_output(0))
    soft.axes = 1 << 2
    red = net.add_reduce(soft.get_output(0), trt.ReduceOperation.MAX, 0b010, False)
    topk = net.add_topk(red.get_output(0), trt.TopKOperation.MAX, 3, 0b10)
    sl = net.add_slice(cat.get_output(0), (0, 1, 0, 0), (1, 4, 3, 5), (1, 2, 2, 1))
    const = net.add_constant((1, 1, 1, 5), rng(5, seed=6))
    add = net.add_elementwise(sl.get_output(0), const.get_output(0), trt.ElementWiseOperation.SUB)
    gathered = net.add_gather(add.get_output(0), idx, 1)
    mm = net.add_matrix_multiply(gathered.get_output(0), trt.MatrixOperation.NONE, gathered.get_output(0),
                                 trt.MatrixOperation.TRANSPOSE)
    cond = net.add_elementwise(mm.get_output(0), mm.get_output(0), trt.ElementWiseOperation.GREATER)
    sel = net.add_select(cond.get_output(0), mm.get_output(0), mm.get_output(0))
    un = net.add_unary(sel.get_output(0), trt.UnaryOperation.ABS)
    ident = net.add_identity(un.get_output(0))

    for tensor, name in [(topk.get_output(0), "top_values"), (topk.get_output(1), "top_indices"),
                         (ident.get_output(0), "matrix"), (silu.get_output(0), "model.1"),
                         (act.get_output(0), "model.0")]:
        tensor.name = name
        net.mark_output(tensor)
    return net


def feeds(batch: int, seed: int = 0):
    g = torch.Generator().manual_seed(seed)
    return {"images": torch.randn(batch, 3, 12, 10, generator=g), "index": torch.tensor([3, 0], dtype=torch.int32)}


def describe(net: INetworkDefinition) -> list:
    """Everything that must survive: layer class, name, metadata, attributes, weights, tensor names, types, shapes."""
    out = [("inputs", [(t.name, t.dtype, tuple(t.shape)) for t in net._inputs]),
           ("outputs", [t.name for t in net._outputs])]
    for i in range(net.num_layers):
        layer = net.get_layer(i)
        outputs = [layer.get_output(j) for j in range(layer.num_outputs)]
        inputs = [layer.get_input(j) for j in range(layer.num_inputs)]
        out.append((type(layer).__name__, layer.name, layer.type, layer.metadata, repr(sorted(layer._attrs.items())),
                    {k: (v.dtype, v.tobytes()) for k, v in layer._weights.items()},
                    [(t.name, t.dtype, tuple(t.shape)) for t in outputs],
                    [None if t is None else t.name for t in inputs]))
    return out


def test_network_builds_and_uses_fp16():
    net = build_network()
    assert net.get_layer(4).get_output(0).dtype == trt.float16  # model.1.conv
    assert {type(net.get_layer(i)).__name__ for i in range(net.num_layers)} >= {
        "IConvolutionLayer", "IScaleLayer", "IActivationLayer", "ICastLayer", "IElementWiseLayer", "IPoolingLayer",
        "IResizeLayer", "IPluginV3Layer", "IConcatenationLayer", "IShuffleLayer", "ISoftMaxLayer", "IReduceLayer",
        "ITopKLayer", "ISliceLayer", "IConstantLayer", "IGatherLayer", "IMatrixMultiplyLayer", "ISelectLayer",
        "IUnaryLayer", "IIdentityLayer"}


@pytest.mark.parametrize("batch", [1, 3])
def test_round_trip_runs_bit_exact(batch):
    net = build_network()
    loaded = loads(dumps(net))
    before = ReferenceExecutor(net).run(feeds(batch), capture=True)
    after = ReferenceExecutor(loaded).run(feeds(batch), capture=True)
    assert before.keys() == after.keys()
    for name in before:
        assert before[name].dtype == after[name].dtype, name
        assert torch.equal(before[name], after[name]), name
    assert before["model.1"].dtype == torch.float16 and before["top_indices"].dtype == torch.int32


def test_names_properties_enums_and_weights_survive():
    net = build_network()
    loaded = loads(dumps(net))
    assert describe(loaded) == describe(net)
    conv = loaded.get_layer(0)
    assert conv.name == "model.0.conv" and conv.metadata == "model.0.conv: Conv2d(3, 8)"
    assert conv.stride_nd == (2, 1) and conv.pre_padding == (1, 0) and conv.post_padding == (0, 2)
    assert conv.padding_mode == trt.PaddingMode.EXPLICIT_ROUND_DOWN
    assert np.array_equal(conv.kernel.numpy().ravel(), rng(8, 3, 3, 3, seed=1).ravel())
    up = next(loaded.get_layer(i) for i in range(loaded.num_layers) if loaded.get_layer(i).name == "up")
    assert up.resize_mode == trt.InterpolationMode.LINEAR and up.shape == (-1, 6, 6, 5)
    assert up.coordinate_transformation == trt.ResizeCoordinateTransformation.HALF_PIXEL
    assert [loaded.get_output(i).name for i in range(loaded.num_outputs)] == \
        ["top_values", "top_indices", "matrix", "model.1", "model.0"]
    assert loaded.get_input(0).shape == (-1, 3, 12, 10) and loaded.get_input(1).dtype == trt.int32
    assert loaded.name == "serialise-me" and loaded.flags == net.flags


def test_loaded_network_is_editable_like_a_built_one():
    loaded = loads(dumps(build_network()))
    conv = loaded.get_layer(0)
    before = loaded.get_output(4).shape
    conv.stride_nd = (1, 1)
    assert loaded.get_output(4).shape != before  # property changes still re-infer downstream shapes


def test_dumps_is_deterministic():
    assert dumps(build_network()) == dumps(build_network())


def test_payload_is_not_a_pickle():
    payload = dumps(build_network())
    with zipfile.ZipFile(io.BytesIO(payload)) as z:
        graph = json.loads(np.load(io.BytesIO(z.read("__graph__.npy"))).tobytes())
    assert {"inputs", "layers", "outputs"} <= set(graph)
    assert graph["layers"][0]["class"] == "IConvolutionLayer"


def _rewrite(payload: bytes, edit) -> bytes:
    archive = np.load(io.BytesIO(payload))
    arrays = {k: archive[k] for k in archive.files}
    graph = json.loads(arrays.pop("__graph__").tobytes())
    edit(graph, arrays)
    buffer = io.BytesIO()
    np.savez(buffer, __graph__=np.frombuffer(json.dumps(graph).encode(), np.uint8), **arrays)
    return buffer.getvalue()


def _corruptions():
    payload = dumps(build_network())
    middle = bytearray(payload)
    middle[len(middle) // 2] ^= 0xFF
    return {
        "empty": b"",
        "garbage": b"this is not an engine",
        "truncated": payload[: len(payload) // 2],
        "flipped-byte": bytes(middle),
        "pickle": b"\x80\x04\x95\x00\x00\x00\x00\x00\x00\x00\x00.",
        "zip-without-graph": _zip_with({"x.npy": b"nothing"}),
        "graph-not-json": _rewrite_raw(payload, b"{not json"),
        "graph-missing-key": _rewrite(payload, lambda g, a: g.pop("layers")),
        "missing-weights": _rewrite(payload, lambda g, a: a.pop("0/kernel")),
        "unknown-class": _rewrite(payload, lambda g, a: g["layers"][0].update({"class": "IFullyConnectedLayer"})),
        "unknown-enum": _rewrite(payload, lambda g, a: g["inputs"][0].update({"dtype": {"enum": "DataType.FLOAT99"}})),
        "dangling-input": _rewrite(payload, lambda g, a: g["layers"][1].update({"inputs": [[99, 0]]})),
    }


def _zip_with(files: dict) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as z:
        for name, data in files.items():
            z.writestr(name, data)
    return buffer.getvalue()


def _rewrite_raw(payload: bytes, graph_bytes: bytes) -> bytes:
    archive = np.load(io.BytesIO(payload))
    arrays = {k: archive[k] for k in archive.files if k != "__graph__"}
    buffer = io.BytesIO()
    np.savez(buffer, __graph__=np.frombuffer(graph_bytes, np.uint8), **arrays)
    return buffer.getvalue()


CORRUPTIONS = _corruptions()


@pytest.mark.parametrize("kind", sorted(CORRUPTIONS))
def test_corrupt_payload_is_a_network_error(kind):
    with pytest.raises(NetworkError):
        loads(CORRUPTIONS[kind])


def test_untrusted_plugin_module_is_never_imported(monkeypatch):
    payload = _rewrite(dumps(build_network()), lambda g, a: [
        layer.update({"attrs": {**layer["attrs"], "op_id": "evil::op", "module": "os"}})
        for layer in g["layers"] if layer["class"] == "IPluginV3Layer"])
    imported = []
    monkeypatch.setattr(ref_plugin, "importlib", type("Spy", (), {"import_module": staticmethod(imported.append)}))
    with pytest.raises((NetworkError, ValueError), match="outside the zoo's plugins package"):
        ReferenceExecutor(loads(payload))
    assert imported == []
