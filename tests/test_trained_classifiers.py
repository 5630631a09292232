"""The trained MobileNetV2 (torchvision's IMAGENET1K_V1 file) and EfficientNet-Lite0 (the TF port) through the zoo,
on the real photographs that setup installs, at 224 px.

The expected classes are computed in the test by the project's reference modules (plain PyTorch, the checkpoint
loaded with torch.load(weights_only=True) and load_state_dict), on the same pre-processed crops: the zoo network at
FP32 must give the same top-5, in order, on every photograph, built from the checkpoint directly and from the .wts
that tools/gen_wts.py writes; at FP16 the same top-1. As a check of the reference and of the pre-processing
themselves, its top-1 on the photographs that weights.md lists are those ImageNet classes.
"""
from __future__ import annotations

import argparse

import numpy as np
import pytest
import torch

from tools import gen_wts
from wts.weight_map import WeightMap
from zoo.assets import PHOTOS, asset_path, available
from zoo.efficientnet.model import EfficientNetLite, EfficientNetModel
from zoo.engine.backends import ReferenceBackend
from zoo.engine.checkpoint import load_state_dict
from layers.precision import Precision
from zoo.engine.networks import define_network
from zoo.mobilenet.model import MobileNetModel, MobileNetV2
from zoo.vision.imagenet import imagenet_classes

pytestmark = pytest.mark.skipif(not (available("mobilenet_v2") and available("efficientnet_lite0")
                                     and all(available(p) for p in PHOTOS)),
                                reason="trained weights or photographs not installed (make setup)")

CASES = {  # asset -> (zoo model, reference module, what weights.md saw for some photos)
    "mobilenet_v2": (MobileNetModel, MobileNetV2, {"coffee": "espresso", "chelsea": "Egyptian cat",
                                                   "motorcycle_left": "moped", "china": "palace"}),
    "efficientnet_lite0": (EfficientNetModel, EfficientNetLite, {"coffee": "espresso", "motorcycle_left": "moped",
                                                                 "china": "palace", "flower": "daisy"}),
}


def _zoo_logits(model, weights, config, batch, mode):
    backend = ReferenceBackend()
    net, outputs = define_network(model, backend, weights, config, Precision(mode))
    x = batch if mode == "fp32" else batch.astype(np.float16)
    return backend.runner_for(net).run({model.input_name: x})[outputs[0]]


@pytest.fixture(scope="module", params=sorted(CASES))
def trained(request):
    """(name, zoo model, checkpoint weights, config, photos batch, reference top-5 per photo)."""
    name = request.param
    model_class, reference_class, _ = CASES[name]
    model = model_class()
    path = asset_path(name)
    weights = WeightMap(load_state_dict(path).tensors, str(path))
    config = model.config_from_weights(weights, argparse.Namespace(variant=None, num_classes=1000, input_size=None
                                                                   if name == "efficientnet_lite0" else 224))
    batch, contexts = model.load_batch([asset_path(p) for p in PHOTOS], config)
    assert len(batch) == len(PHOTOS) and not any("error" in c for c in contexts)
    reference = reference_class()
    reference.load_state_dict(torch.load(path, map_location="cpu", weights_only=True))
    with torch.no_grad():
        top5 = reference.eval()(torch.from_numpy(batch)).topk(5, dim=1).indices
    return name, model, weights, config, batch, top5


def test_reference_sees_what_weights_md_says(trained):
    name, _, _, _, _, top5 = trained
    classes = imagenet_classes()
    seen = {photo: classes[int(top5[PHOTOS.index(photo), 0])] for photo in CASES[name][2]}
    assert seen == CASES[name][2]


def test_fp32_top5_equals_the_reference_on_every_photo(trained):
    _, model, weights, config, batch, top5 = trained
    logits = _zoo_logits(model, weights, config, batch, "fp32")
    assert logits.topk(5, dim=1).indices.tolist() == top5.tolist()


def test_fp32_from_gen_wts_equals_the_reference(trained, tmp_path):
    name, model, _, config, batch, top5 = trained
    out = tmp_path / f"{name}.wts"
    assert gen_wts.main(["-w", str(asset_path(name)), "-o", str(out), "-q"]) == 0
    from zoo.engine.checkpoint import load_state_dict as load  # .wts goes through the same loader as the CLI
    weights = WeightMap(load(out).tensors, str(out))
    assert model.config_from_weights(weights, argparse.Namespace(variant=None, num_classes=1000,
                                                                 input_size=config["input_size"])) == config
    subset = [PHOTOS.index(p) for p in ("coffee", "chelsea", "flower")]
    logits = _zoo_logits(model, weights, config, batch[subset], "fp32")
    assert logits.topk(5, dim=1).indices.tolist() == top5[subset].tolist()


def test_fp16_keeps_top1_on_every_photo(trained):
    _, model, weights, config, batch, top5 = trained
    logits = _zoo_logits(model, weights, config, batch, "fp16")
    assert logits.argmax(dim=1).tolist() == top5[:, 0].tolist()


def test_infer_names_imagenet_classes(tmp_path, capsys):
    """The CLI end to end: `infer` on a photo prints ImageNet names (the checkpoint has none)."""
    import json
    from zoo.engine.cli import main
    assert main(MobileNetModel(), ["infer", "--weights", str(asset_path("mobilenet_v2")),
                                   "--source", str(asset_path("coffee"))]) == 0
    record = json.loads(capsys.readouterr().out.splitlines()[-1])
    reference = MobileNetV2()
    reference.load_state_dict(torch.load(asset_path("mobilenet_v2"), map_location="cpu", weights_only=True))
    batch, _ = MobileNetModel().load_batch([asset_path("coffee")], {"input_size": 224})
    with torch.no_grad():
        expected = int(reference.eval()(torch.from_numpy(batch)).argmax())
    assert record["top"][0]["class_id"] == expected
    assert record["top"][0]["class_name"] == imagenet_classes()[expected]
