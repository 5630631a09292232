"""Tests for bugs that were planted and went unnoticed (issue 17): each input and assertion is chosen so that the
planted bug fails it. The expected values are written out or computed independently, never taken from the code
under test."""
from __future__ import annotations

import math
import os

import numpy as np
import pytest
import torch

from _serving import IMAGES, run_cli


# ---------------------------------------------------------------------------------------------- rotated NMS

def test_rotated_nms_at_the_exact_threshold_suppresses():
    """A box whose probiou with a better one equals the threshold is suppressed (overlap >= threshold, the rule of
    ultralytics' OBB NMS and of the zoo's reference loop); one float32 step above the overlap keeps both. Two
    identical boxes, so the overlap is what probiou gives for them."""
    from zoo.vision.obb import probiou, probiou_reference, rotated_nms, rotated_nms_reference
    boxes = torch.tensor([[50.0, 40.0, 30.0, 12.0, 0.3], [50.0, 40.0, 30.0, 12.0, 0.3]])
    scores = torch.tensor([0.9, 0.8])
    overlap = np.float32(probiou(boxes[:1], boxes[1:])[0, 0])
    assert 0.9 < overlap <= 1.0
    above = float(np.nextafter(overlap, np.float32(2)))
    below = float(np.nextafter(overlap, np.float32(0)))
    assert rotated_nms(boxes, scores, float(overlap)).tolist() == [0]
    assert rotated_nms(boxes, scores, above).tolist() == [0, 1]
    assert rotated_nms(boxes, scores, below).tolist() == [0]
    exact = probiou_reference(boxes.numpy(), boxes.numpy())[0, 1]  # the float64 loop, its own overlap
    assert rotated_nms_reference(boxes.numpy(), scores.numpy(), exact).tolist() == [0]
    assert rotated_nms_reference(boxes.numpy(), scores.numpy(), math.nextafter(exact, 2.0)).tolist() == [0, 1]


def test_probiou_is_one_for_the_same_box_and_falls_with_distance_in_every_direction():
    """The sign of each term: moving the second box away along x, y or a diagonal, or turning it, only lowers the
    overlap, on both diagonals (a wrong sign of the covariance term raises one of them)."""
    from zoo.vision.obb import probiou, probiou_reference
    base = [50.0, 50.0, 40.0, 10.0, 0.5]
    for dx, dy in ((4, 0), (0, 4), (3, 3), (3, -3), (-3, 3)):
        moved = [base[0] + dx, base[1] + dy, *base[2:]]
        near = [base[0] + dx / 2, base[1] + dy / 2, *base[2:]]
        got = probiou(torch.tensor([base]), torch.tensor([near, moved]))[0].tolist()
        assert 1.0 - 1e-3 > got[0] > got[1] > 0, (dx, dy, got)
        np.testing.assert_allclose(got, probiou_reference(np.array([base]), np.array([near, moved]))[0], atol=1e-5)
    # a tilted box overlaps more with a neighbour along its long axis than across it
    along = [base[0] + 6 * math.cos(0.5), base[1] + 6 * math.sin(0.5), *base[2:]]
    across = [base[0] - 6 * math.sin(0.5), base[1] + 6 * math.cos(0.5), *base[2:]]
    got = probiou(torch.tensor([base]), torch.tensor([along, across]))[0]
    assert got[0] > got[1]


# ---------------------------------------------------------------------------------------------- files, weights

def test_refuse_overwrite_sees_hard_links(tmp_path):
    from zoo.engine.files import OutputOverwritesInput, refuse_overwrite
    source = tmp_path / "w.pt"
    source.write_bytes(b"weights")
    linked = tmp_path / "other-name.engine"
    os.link(source, linked)  # another name, the same inode
    with pytest.raises(OutputOverwritesInput, match="is the same file as --weights"):
        refuse_overwrite({"--output": linked}, {"--weights": source})
    refuse_overwrite({"--output": tmp_path / "new.engine"}, {"--weights": source})


@pytest.mark.parametrize("value", [float("inf"), float("-inf")])
@pytest.mark.parametrize("legacy", [False, True])
def test_pt_files_with_inf_are_refused(tmp_path, value, legacy):
    from zoo.engine.checkpoint import CheckpointError, load_state_dict
    weight = torch.ones(4, 3)
    weight[2, 1] = value
    torch.save({"conv.weight": weight}, tmp_path / "w.pt", _use_new_zipfile_serialization=not legacy)
    with pytest.raises(CheckpointError, match=r"key 'conv.weight': value at index 7 is -?inf"):
        load_state_dict(tmp_path / "w.pt")


def test_legacy_pt_size_budget_follows_zoo_max_weight_bytes(tmp_path, monkeypatch):
    from zoo.engine.checkpoint import CheckpointError, load_state_dict
    torch.save({"w": torch.ones(1000)}, tmp_path / "w.pt", _use_new_zipfile_serialization=False)  # 4000 bytes
    monkeypatch.setenv("ZOO_MAX_WEIGHT_BYTES", "3000")  # below the storage, far below 4x the file
    with pytest.raises(CheckpointError, match="ZOO_MAX_WEIGHT_BYTES"):
        load_state_dict(tmp_path / "w.pt")
    monkeypatch.setenv("ZOO_MAX_WEIGHT_BYTES", "4000")
    assert load_state_dict(tmp_path / "w.pt").tensors["w"].shape == (1000,)


# ---------------------------------------------------------------------------------------------- ImageNet

def test_imagenet_mean_and_std_are_torchvisions_numbers_in_rgb_order():
    """Written out (torchvision's ImageNet normalisation, R, G, B): both crop implementations share the constants,
    so only numbers from outside catch a swapped order. A flat BGR image (B=10, G=120, R=240) must come out as
    ((240, 120, 10) / 255 - mean) / std, channel by channel."""
    from zoo.vision.imagenet import CropSpec, center_crop, center_crop_torch
    image = np.empty((40, 50, 3), np.uint8)
    image[:] = (10, 120, 240)
    rgb = np.array([240, 120, 10], np.float64) / 255
    want = (rgb - np.array([0.485, 0.456, 0.406])) / np.array([0.229, 0.224, 0.225])
    spec = CropSpec(crop=16, resize=20)
    for got in (center_crop(image, spec), center_crop_torch(torch.from_numpy(image), spec).numpy()):
        assert got.shape == (3, 16, 16)
        np.testing.assert_allclose(got.reshape(3, -1), np.repeat(want[:, None], 256, 1), rtol=0, atol=1e-5)


# ---------------------------------------------------------------------------------------------- calibration

def test_calibrate_percentile_is_used_and_recorded(tmp_path):
    """Lower percentiles clip lower: every scale at 50 is at most its scale at 99.99, some strictly smaller; and the
    cache says which percentile made it."""
    from zoo.engine.calibration import CalibrationCache
    caches = {}
    for percentile in (50, 99.99):
        out = tmp_path / f"p{percentile}.cache"
        run_cli("lenet", "calibrate", "--images", IMAGES, "--method", "percentile", "--percentile", percentile,
                "-o", out)
        caches[percentile] = CalibrationCache.load(out)
    low, high = caches[50], caches[99.99]
    assert low.percentile == 50 and high.percentile == 99.99
    assert low.scales.keys() == high.scales.keys()
    assert all(low.scales[k] <= high.scales[k] for k in low.scales)
    assert any(low.scales[k] < high.scales[k] for k in low.scales)


# ---------------------------------------------------------------------------------------------- serving batcher

def test_the_batcher_never_exceeds_max_batch_deterministically():
    """No timing: the first item is held inside run_batch while ten more queue up; then they must come in batches
    of exactly 4, 4 and 2 (a bound off by one, or none, gives other sizes)."""
    import threading

    from zoo.serve.batching import Batcher
    entered, release, sizes = threading.Event(), threading.Event(), []

    def run_batch(items):
        entered.set()
        release.wait(30)
        sizes.append(len(items))
        return [item * 10 for item in items]

    batcher = Batcher(run_batch, max_batch=4, max_delay=0, max_queue=100)
    first = batcher.submit(0)
    assert entered.wait(30)
    rest = [batcher.submit(i) for i in range(1, 11)]
    release.set()
    assert [f.result(timeout=30) for f in [first, *rest]] == [i * 10 for i in range(11)]
    assert sizes == [1, 4, 4, 2]


# ---------------------------------------------------------------------------------------------- MTCNN

def test_mtcnn_final_nms_uses_the_min_overlap():
    """A stub O-Net that passes a big box and a small box inside it: their IoU is 400 / 6400 (union NMS keeps
    both), their 'Min' overlap is 1 (the small one's whole area): only the big one, the better scored, stays."""
    from zoo.mtcnn.cascade import Cascade
    from zoo.mtcnn.resample import AreaSampler

    def onet(batch):
        n = len(batch)
        prob = torch.tensor([[0.01, 0.99], [0.05, 0.95]])[:n]
        return {"prob": prob, "reg": torch.zeros(n, 4), "landmarks": torch.full((n, 10), 0.5)}

    cascade = Cascade({"onet": onet}, "cpu")
    sampler = AreaSampler(torch.zeros((120, 120, 3), dtype=torch.uint8))
    big, small = [10.0, 10.0, 89.0, 89.0], [30.0, 30.0, 49.0, 49.0]
    faces = cascade._output(sampler, torch.tensor([big, small]))
    assert faces.boxes.tolist() == [big]
    assert faces.scores.tolist() == pytest.approx([0.99])
