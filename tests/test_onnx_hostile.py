"""Hostile ONNX files: weights with NaN/Inf, repeated or malformed initializers (through gen_wts and build), engines
whose tensors live outside the file in any field, and engine headers that lie (issue 17). Every refusal is one line
naming the file (and the tensor)."""
from __future__ import annotations

import dataclasses
import os

import numpy as np
import pytest

onnx = pytest.importorskip("onnx")
from onnx import TensorProto, helper, numpy_helper  # noqa: E402

from tools import gen_wts  # noqa: E402
from zoo.engine.checkpoint import CheckpointError, load_state_dict  # noqa: E402
from zoo.engine.onnx.runner import OnnxModelError, OnnxRunner  # noqa: E402


def conv_model(initializers) -> onnx.ModelProto:
    """A one-Conv graph named like a PyTorch export: its initializers are read as model.0.conv.weight/bias."""
    node = helper.make_node("Conv", ["x", "model.0.conv.weight", "model.0.conv.bias"], ["y"], name="/model.0/conv/Conv")
    graph = helper.make_graph([node], "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 2, 4, 4])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, None)], initializers)
    return helper.make_model(graph)


def good_initializers():
    return [numpy_helper.from_array(np.ones((3, 2, 1, 1), np.float32), "model.0.conv.weight"),
            numpy_helper.from_array(np.zeros(3, np.float32), "model.0.conv.bias")]


def save(tmp_path, model, name="w.onnx"):
    path = tmp_path / name
    path.write_bytes(model.SerializeToString())
    return path


def test_a_good_file_is_read(tmp_path):
    ckpt = load_state_dict(save(tmp_path, conv_model(good_initializers())))
    assert list(ckpt.tensors) == ["model.0.conv.weight", "model.0.conv.bias"]
    np.testing.assert_array_equal(ckpt.tensors["model.0.conv.weight"], np.ones((3, 2, 1, 1), np.float32))


@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf])
def test_nonfinite_initializers_are_refused_by_gen_wts_and_load(tmp_path, capsys, bad):
    weight = np.ones((3, 2, 1, 1), np.float32)
    weight[1, 0, 0, 0] = bad
    path = save(tmp_path, conv_model([numpy_helper.from_array(weight, "model.0.conv.weight"),
                                      good_initializers()[1]]))
    with pytest.raises(CheckpointError, match=r"w\.onnx: key 'model\.0\.conv\.weight': value at index 2 is"):
        load_state_dict(path)
    assert gen_wts.main(["-w", str(path), "-o", str(tmp_path / "w.wts")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "w.onnx" in err[0] and "non-finite" in err[0]
    assert not (tmp_path / "w.wts").exists()


def test_build_refuses_nonfinite_onnx_weights(tmp_path, capsys):
    from zoo.engine.cli import main
    from zoo.registry import family
    weight = np.ones((3, 2, 1, 1), np.float32)
    weight[0, 0, 0, 0] = np.inf
    path = save(tmp_path, conv_model([numpy_helper.from_array(weight, "model.0.conv.weight"),
                                      good_initializers()[1]]))
    code = main(family("yolov5").load(), ["build", "--weights", str(path), "-o", str(tmp_path / "y.engine")])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and "w.onnx" in err[-1] and "non-finite" in err[-1]
    assert not (tmp_path / "y.engine").exists()


def test_a_repeated_initializer_name_is_refused_naming_it(tmp_path):
    twice = good_initializers() + [numpy_helper.from_array(np.full((3,), 5, np.float32), "model.0.conv.bias")]
    with pytest.raises(CheckpointError, match=r"w\.onnx: two initializers are named 'model\.0\.conv\.bias'"):
        load_state_dict(save(tmp_path, conv_model(twice)))


def malformed(kind: str):
    weight, bias = good_initializers()
    if kind == "huge dims":
        del weight.dims[:]
        weight.dims.extend([2 ** 40])
    elif kind == "negative dims":
        del weight.dims[:]
        weight.dims.extend([-3, 2, 1, 1])
    elif kind == "short data":
        del weight.dims[:]
        weight.dims.extend([30, 2, 1, 1])
    elif kind == "external entries without the flag":
        entry = weight.external_data.add()
        entry.key, entry.value = "location", "README.md"
    return [weight, bias]


@pytest.mark.parametrize("kind", ["huge dims", "negative dims", "short data", "external entries without the flag"])
def test_malformed_initializers_are_one_line_naming_file_and_tensor(tmp_path, capsys, kind):
    path = save(tmp_path, conv_model(malformed(kind)))
    with pytest.raises(CheckpointError) as e:
        load_state_dict(path)
    message = str(e.value)
    assert "\n" not in message and "w.onnx" in message and "'model.0.conv.weight'" in message, message
    assert gen_wts.main(["-w", str(path), "-o", str(tmp_path / "w.wts")]) == 2
    assert "unexpected" not in capsys.readouterr().err


def test_the_size_budget_follows_zoo_max_weight_bytes(tmp_path, monkeypatch):
    path = save(tmp_path, conv_model(good_initializers()))
    monkeypatch.setenv("ZOO_MAX_WEIGHT_BYTES", str(4 * 8))  # 8 float32 values; the file declares 6 + 3
    with pytest.raises(CheckpointError, match="model.0.conv.bias.*ZOO_MAX_WEIGHT_BYTES"):
        load_state_dict(path)
    monkeypatch.setenv("ZOO_MAX_WEIGHT_BYTES", str(4 * 9))
    assert len(load_state_dict(path).tensors) == 2


# ---------------------------------------------------------------------------------------------------------------
# engines: no tensor may send ONNX Runtime to another file, whatever field holds it

def external(name: str, location: str = "README.md", flag: bool = True) -> TensorProto:
    tensor = helper.make_tensor(name, TensorProto.FLOAT, [4], [0.0] * 4)
    del tensor.float_data[:]
    if flag:
        tensor.data_location = TensorProto.EXTERNAL
    for key, value in (("location", location), ("offset", "0"), ("length", "16")):
        entry = tensor.external_data.add()
        entry.key, entry.value = key, value
    return tensor


def sparse(values: TensorProto) -> onnx.SparseTensorProto:
    indices = helper.make_tensor("i", TensorProto.INT64, [4], [0, 1, 2, 3])
    return helper.make_sparse_tensor(values, indices, [4])


def engine_model(where: str) -> onnx.ModelProto:
    """x + c, where the constant's data is declared external through `where`."""
    nodes, initializers, sparse_initializers = [], [], []
    if where == "sparse_value":
        nodes.append(helper.make_node("Constant", [], ["c"], sparse_value=sparse(external("v"))))
    elif where == "tensors":  # a tensor-list attribute (as in some ops' attributes); still a TensorProto
        node = helper.make_node("Identity", ["x"], ["c"])
        node.attribute.append(helper.make_attribute("extra", [external("v")]))
        nodes.append(node)
    elif where == "sparse_initializer":
        sparse_initializers.append(sparse(external("c")))
    elif where == "initializer without the flag":
        initializers.append(external("c", flag=False))
    elif where == "subgraph":
        inner = helper.make_graph([helper.make_node("Constant", [], ["k"], value=external("v"))], "then", [],
                                  [helper.make_tensor_value_info("k", TensorProto.FLOAT, [4])])
        nodes.append(helper.make_node("Constant", [], ["cond"], value=helper.make_tensor("b", TensorProto.BOOL,
                                                                                        [], [True])))
        nodes.append(helper.make_node("If", ["cond"], ["c"], then_branch=inner, else_branch=inner))
    nodes.append(helper.make_node("Add", ["x", "c"], ["y"]))
    graph = helper.make_graph(nodes, "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [4])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, [4])], initializers,
                              sparse_initializer=sparse_initializers)
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])


@pytest.mark.parametrize("where", ["sparse_value", "tensors", "sparse_initializer", "initializer without the flag",
                                   "subgraph"])
def test_no_engine_tensor_is_read_from_another_file(tmp_path, monkeypatch, where):
    (tmp_path / "README.md").write_bytes(b"\x00" * 64)  # what ONNX Runtime would read from the working directory
    monkeypatch.chdir(tmp_path)
    with pytest.raises(OnnxModelError, match="external files"):
        OnnxRunner(engine_model(where).SerializeToString())


def test_a_lying_header_names_the_engine_file(tmp_path, capsys):
    from zoo.engine.cli import main
    from zoo.engine.engine_file import read_engine, write_engine
    from zoo.registry import family
    mlp = family("mlp").load()
    assert main(mlp, ["build", "--backend", "onnx", "-o", str(tmp_path / "m.engine")]) == 0
    header, payload = read_engine(tmp_path / "m.engine")
    source = tmp_path / "x.npy"
    np.save(source, np.ones((1, 1, 1, 1), np.float32))
    for field, value in (("input_name", "renamed"), ("outputs", ["elsewhere"])):
        lying = tmp_path / f"lie-{field}.engine"
        write_engine(lying, dataclasses.replace(header, **{field: value}), payload)
        capsys.readouterr()
        assert main(mlp, ["infer", "--engine", str(lying), "--source", str(source)]) == 2
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and f"{os.path.basename(lying)}: the header names" in err[0], err
