"""ImageNet support shared by the classifiers: the 1000 class names, and the torch (GPU) centre crop held to the
OpenCV reference within one grey level (OpenCV resizes uint8 in fixed point; torch in float)."""
from __future__ import annotations

import cv2
import numpy as np
import pytest
import torch

from zoo.engine.classifier import ClassifierModel
from zoo.vision.imagenet import CropSpec, center_crop, center_crop_torch, imagenet_classes

IMAGES = ["tests/data/images/street.jpg", "tests/data/images/portrait.jpg", "tests/data/images/odd.jpg",
          "tests/data/images/tiny.jpg"]
SPECS = [CropSpec(), CropSpec.scaled(96), CropSpec(crop=300, resize=320, interpolation=cv2.INTER_CUBIC),
         CropSpec.scaled(64, mean=(127 / 255,) * 3, std=(128 / 255,) * 3)]


def test_class_names_are_imagenets_synset_order():
    names = imagenet_classes()
    assert len(names) == 1000 and names[0] == "tench" and names[999] == "toilet tissue"
    assert (names[285], names[665], names[698], names[967], names[985]) == \
        ("Egyptian cat", "moped", "palace", "espresso", "daisy")
    duplicated = {n for n in names if names.count(n) > 1}
    assert duplicated == {"crane", "maillot"}  # two synsets each share a first lemma in ImageNet-1k


def _grey_levels(a: np.ndarray, b: np.ndarray, spec: CropSpec) -> np.ndarray:
    """|a - b| of two normalised CHW crops in 0..255 grey levels."""
    return np.abs(a - b) * np.asarray(spec.std, np.float32).reshape(3, 1, 1) * 255


@pytest.mark.parametrize("spec", SPECS, ids=lambda s: f"{s.crop}-{s.resize}-{s.interpolation}")
@pytest.mark.parametrize("path", IMAGES)
def test_torch_crop_equals_opencv_reference_within_one_grey_level(path, spec):
    image = cv2.imread(path, cv2.IMREAD_COLOR)
    expected = center_crop(image, spec)
    got = center_crop_torch(torch.from_numpy(image), spec).numpy()
    assert got.shape == expected.shape == (3, spec.crop, spec.crop)
    diff = _grey_levels(got, expected, spec)
    assert diff.max() <= 1.0 + 1e-3
    assert (diff > 0.5).mean() < 0.2  # rounding differences only, not a shifted grid


def test_torch_crop_catches_a_swapped_channel_order():
    """The tolerance is tight enough to see BGR left unflipped."""
    image = cv2.imread(IMAGES[0], cv2.IMREAD_COLOR)
    expected = center_crop(image, CropSpec())
    got = center_crop_torch(torch.from_numpy(image[:, :, ::-1].copy()), CropSpec()).numpy()
    assert _grey_levels(got, expected, CropSpec()).max() > 10


class _Classifier(ClassifierModel):
    def input_shape(self, config):
        return (3, config["input_size"], config["input_size"])


@pytest.mark.cuda
def test_load_batch_on_cuda_equals_the_cpu_batch():
    from pathlib import Path
    model, config = _Classifier(), {"input_size": 224}
    cpu, _ = model.load_batch([Path(p) for p in IMAGES], config, "cpu")
    gpu, _ = model.load_batch([Path(p) for p in IMAGES], config, "cuda")
    assert isinstance(gpu, torch.Tensor) and gpu.is_cuda and gpu.shape == cpu.shape
    for got, expected in zip(gpu.cpu().numpy(), cpu):
        assert _grey_levels(got, expected, CropSpec()).max() <= 1.0 + 1e-3


def test_records_name_imagenet_classes_for_a_1000_way_output():
    model = _Classifier()
    logits = torch.zeros(1, 1000)
    logits[0, 967] = 10
    record = model.records({"out": logits}, [{"file": "x.png"}], {}, None)[0]
    assert record["top"][0] == {"class_id": 967, "score": pytest.approx(record["top"][0]["score"]),
                                "class_name": "espresso"}
    ten = model.records({"out": torch.zeros(1, 10)}, [{"file": "x.png"}], {}, None)[0]
    assert "class_name" not in ten["top"][0]
