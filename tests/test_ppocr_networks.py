"""PP-OCR's zoo networks against the reference modules, layer by layer at FP32 1e-4, on the trained weights given
as a .wts file gives them (flat values: the configuration from key names and counts), and over dynamic shapes."""
import numpy as np
import pytest
import torch

from layerwise import args, check_family, flat_weights
from zoo import assets
from zoo.engine.backends import ReferenceBackend
from zoo.engine.networks import define_network
from zoo.ppocr.model import PPOCRModel
from zoo.ppocr.onnx_import import import_paddle_onnx, reference_from_state

pytest.importorskip("onnx")
SHAPES = {"det": (1, 3, 64, 96), "rec": (2, 3, 48, 64), "cls": (2, 3, 48, 192)}


def trained(asset):
    if not assets.available(asset):
        pytest.skip("the PP-OCR wheels are not installed (make setup)")
    state, config = import_paddle_onnx(str(assets.asset_path(asset)))
    return reference_from_state(state, config), config


@pytest.mark.parametrize("asset", ["ppocrv5_det", "ppocrv5_cls", "ppocrv5_rec", "ppocrv4_rec"])
def test_every_layer_matches_the_reference(asset):
    module, config = trained(asset)
    x = torch.from_numpy(np.random.default_rng(1).uniform(-1, 1, SHAPES[config["stage"]]).astype(np.float32))
    found = check_family(PPOCRModel(), module, args(variant="v5"), x)
    assert {k: v for k, v in found.items() if k != "variant"} == {k: v for k, v in config.items()}


@pytest.mark.parametrize("asset, sizes", [("ppocrv5_det", [(64, 96), (96, 64)]),
                                          ("ppocrv5_rec", [(48, 32), (48, 120)])])
def test_one_network_runs_several_sizes(asset, sizes):
    module, config = trained(asset)
    model, backend = PPOCRModel(), ReferenceBackend()
    net, outputs = define_network(model, backend, flat_weights(module), config)
    runner = backend.runner_for(net)
    for h, w in sizes:
        x = np.random.default_rng(h + w).uniform(-1, 1, (1, 3, h, w)).astype(np.float32)
        got = runner.run({model.input_name: x})[outputs[0]]
        with torch.no_grad():
            expected = module(torch.from_numpy(x))
        assert got.shape == expected.shape
        np.testing.assert_allclose(got.numpy(), expected.numpy(), atol=1e-4, rtol=0)


def test_weights_of_the_wrong_stage_are_one_line():
    module, config = trained("ppocrv5_cls")
    with pytest.raises(ValueError, match="direction classification weights, but text recognition weights"):
        PPOCRModel().config_from_weights(flat_weights(module), args(variant="v5"), stage="rec")


def test_gen_wts_writes_the_structured_weights_of_a_paddle_export(tmp_path):
    """tools/gen_wts.py on the trained classifier's ONNX file: a .wts whose flat values give the same configuration
    and a network equal to the reference module."""
    from tools import gen_wts
    from zoo.ppocr.stages import load_stage_weights
    module, config = trained("ppocrv5_cls")
    assert gen_wts.main(["-w", str(assets.asset_path("ppocrv5_cls")), "-o", str(tmp_path / "cls.wts"), "-q"]) == 0
    weights, found = load_stage_weights(tmp_path / "cls.wts", "cls", "v5")
    assert {k: v for k, v in found.items() if k != "variant"} == config
    model, backend = PPOCRModel(), ReferenceBackend()
    net, outputs = define_network(model, backend, weights, found)
    x = np.random.default_rng(2).uniform(-1, 1, SHAPES["cls"]).astype(np.float32)
    got = backend.runner_for(net).run({model.input_name: x})[outputs[0]]
    with torch.no_grad():
        np.testing.assert_allclose(got.numpy(), module(torch.from_numpy(x)).numpy(), atol=1e-4, rtol=0)


@pytest.mark.parametrize("asset", ["ppocrv5_det", "ppocrv5_rec"])
def test_the_onnx_writer_runs_the_networks(asset):
    """The third executor: the zoo's network definitions written as ONNX and run by ONNX Runtime (the detector's
    transposed convolutions and resizes, the recognizer's attention and layer norms; the classifier's ops are
    among them)."""
    pytest.importorskip("onnxruntime")
    from zoo.engine.backends import choose_backend
    from zoo.engine.engines import runner_for
    module, config = trained(asset)
    model, backend = PPOCRModel(), choose_backend("onnx")
    net, outputs = define_network(model, backend, flat_weights(module), config)
    x = np.random.default_rng(3).uniform(-1, 1, SHAPES[config["stage"]]).astype(np.float32)
    got = runner_for(backend, net, model.input_name, len(x), x.shape).run({model.input_name: torch.from_numpy(x)})
    with torch.no_grad():
        expected = module(torch.from_numpy(x))
    np.testing.assert_allclose(got[outputs[0]].float().numpy(), expected.numpy(), atol=1e-4, rtol=0)
