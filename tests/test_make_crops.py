"""tools/make_crops.py: held-out crops differ from the calibration crops, sizes and counts as documented, seeded."""
import cv2
import numpy as np

from tools import make_crops
from zoo.assets import PHOTOS


def test_crops_are_seeded_disjoint_and_256_on_the_short_side(tmp_path):
    assert make_crops.main(["--out", str(tmp_path / "a"), "--calib", "1", "--eval", "1"]) == 0
    assert make_crops.main(["--out", str(tmp_path / "b"), "--calib", "1", "--eval", "1"]) == 0
    for split in ("calib", "eval"):
        files = sorted((tmp_path / "a" / split).glob("*.png"))
        assert len(files) == len(PHOTOS)
        for f in files:
            image = cv2.imread(str(f))
            assert min(image.shape[:2]) == make_crops.SHORT_SIDE
            assert np.array_equal(image, cv2.imread(str(tmp_path / "b" / split / f.name)))  # same seed, same crop
    calib, held_out = (cv2.imread(str(tmp_path / "a" / s / "coffee_000.png")) for s in ("calib", "eval"))
    assert calib.shape != held_out.shape or not np.array_equal(calib, held_out)
