"""NMS: the numpy reference and the vectorised torch path give exactly the same rows, and both do what upstream does."""

import itertools

import numpy as np
import pytest
import torch

import zoo.vision.nms as nms_module
from zoo.vision.nms import batched_nms, nms_reference


def make_pred(rng, b, n, nc, coarse=True, extent=100.0):
    """Predictions with many exact ties (coarse score levels), duplicated rows and clustered boxes."""
    p = np.zeros((b, n, 5 + nc), np.float32)
    p[..., 0:2] = rng.uniform(0, extent, (b, n, 2))
    p[..., 2:4] = rng.uniform(1, 40, (b, n, 2))
    if coarse:
        p[..., 0:4] = np.round(p[..., 0:4] * 2) / 2  # half-pixel grid: exact IoU values such as 0.5 are common
        p[..., 4] = rng.choice([0.1, 0.3, 0.5, 0.7, 0.9, 1.0], (b, n))
        p[..., 5:] = rng.choice([0.0, 0.25, 0.5, 0.75, 1.0], (b, n, nc))
    else:
        p[..., 4] = rng.uniform(0, 1, (b, n))
        p[..., 5:] = rng.uniform(0, 1, (b, n, nc))
    if n >= 4:  # duplicate a quarter of the rows elsewhere
        src = rng.integers(0, n, (b, n // 4))
        p[:, n // 2:n // 2 + n // 4] = p[np.arange(b)[:, None], src]
    return p


def assert_same(pred, **kw):
    chunk = kw.pop("chunk", 1024)
    fast = batched_nms(torch.from_numpy(pred), chunk=chunk, **kw)
    assert len(fast) == len(pred)
    for b in range(len(pred)):
        ref = nms_reference(pred[b], **kw)
        got = fast[b].numpy()
        assert got.dtype == ref.dtype == np.float32 and got.shape == ref.shape == (len(ref), 6), (b, kw)
        np.testing.assert_array_equal(got, ref, err_msg=str(kw))
    return fast


def test_randomized_equality_with_ties_duplicates_and_filters():
    rng = np.random.default_rng(0)
    for trial in range(150):
        b, n, nc = int(rng.integers(1, 5)), int(rng.integers(0, 250)), int(rng.integers(1, 6))
        pred = make_pred(rng, b, n, nc, coarse=trial % 3 != 0)
        kw = dict(conf_thres=float(rng.choice([0.0, 0.1, 0.25, 0.3])),
                  iou_thres=float(rng.choice([0.25, 0.3, 0.45, 0.5, 0.7])),
                  agnostic=bool(rng.integers(0, 2)), max_det=int(rng.choice([1, 3, 20, 300])),
                  multi_label=bool(rng.integers(0, 2)), chunk=int(rng.choice([1, 5, 64, 1024])))
        if rng.integers(0, 3) == 0:
            kw["classes"] = [int(c) for c in rng.choice(nc, size=int(rng.integers(1, nc + 1)), replace=False)]
        if rng.integers(0, 5) == 0:
            kw["max_nms"] = int(rng.integers(1, 30))
        assert_same(pred, **kw)


@pytest.mark.parametrize("iters", [1, 8, 10_000])
def test_long_suppression_chains(iters, monkeypatch):
    """Boxes sliding 2 px at a time: each suppresses the next, so the greedy result alternates along the chain."""
    monkeypatch.setattr(nms_module, "FIXED_POINT_ITERS", iters)  # 1: always the row scan; 10_000: never
    n = 600
    pred = np.zeros((2, n, 7), np.float32)
    pred[:, :, 0] = 10 + np.arange(n) * 2.0
    pred[:, :, 1:4] = (50, 10, 10)  # IoU(i, i+1) = 8/12, IoU(i, i+2) = 6/14
    pred[:, :, 4] = 1.0
    pred[0, :, 5] = np.linspace(0.9, 0.3, n)  # scores fall along the chain
    pred[1, :, 6] = np.linspace(0.3, 0.9, n)[np.random.default_rng(0).permutation(n)]  # shuffled, class 1
    out = assert_same(pred, conf_thres=0.25, iou_thres=0.5, max_det=1000, chunk=128)
    assert len(out[0]) == n // 2  # every other box along the chain
    rng = np.random.default_rng(5)
    for _ in range(20):
        p = make_pred(rng, 2, int(rng.integers(1, 300)), 3, coarse=True)
        assert_same(p, conf_thres=0.1, iou_thres=float(rng.choice([0.3, 0.5])), chunk=int(rng.choice([4, 64])),
                    agnostic=bool(rng.integers(0, 2)), max_det=int(rng.choice([5, 300])))


def test_large_dense_batch_equality():
    rng = np.random.default_rng(1)
    pred = make_pred(rng, 3, 3000, 20, coarse=False, extent=640)
    out = assert_same(pred, conf_thres=0.1, iou_thres=0.45, max_det=1000, chunk=256)
    assert all(len(o) > 100 for o in out)
    assert_same(pred[:1], conf_thres=0.2, iou_thres=0.6, max_det=300, multi_label=True, chunk=512)


def xywh(x1, y1, x2, y2):
    return [(x1 + x2) / 2, (y1 + y2) / 2, x2 - x1, y2 - y1]


def rows(boxes, objs, cls_scores):
    return np.array([xywh(*b) + [o] + list(c) for b, o, c in zip(boxes, objs, cls_scores)], np.float32)


def test_iou_exactly_at_the_threshold_is_kept():
    # IoU = 45 / 100 exactly: float32(45) / float32(100) == float32(0.45), and only iou > thres suppresses
    for cls in (0, 1, 2):
        scores = [[0.9 if c == cls else 0.0 for c in range(3)], [0.8 if c == cls else 0.0 for c in range(3)]]
        pred = rows([(0, 0, 10, 10), (0, 0, 10, 4.5)], [1.0, 1.0], scores)
        assert len(assert_same(pred[None], iou_thres=0.45)[0]) == 2
        assert len(assert_same(pred[None], iou_thres=0.449)[0]) == 1
        assert len(assert_same(pred[None], iou_thres=0.5)[0]) == 2
    # IoU = 0.5 exactly (50 / 100)
    pred = rows([(0, 0, 10, 10), (0, 0, 10, 5)], [1.0, 1.0], [[0.9], [0.8]])
    assert len(assert_same(pred[None], iou_thres=0.5)[0]) == 2
    assert len(assert_same(pred[None], iou_thres=0.4999)[0]) == 1


def test_threshold_equal_to_float32_iou_of_arbitrary_boxes():
    """thres = the float32 IoU itself (torchvision's formula on the class-offset boxes): kept; one ulp less: dropped."""
    rng = np.random.default_rng(11)
    for trial in range(300):
        cls = int(rng.integers(0, 3))
        a = rng.uniform(0, 50, 2)
        boxes = [(a[0], a[1], a[0] + rng.uniform(5, 60), a[1] + rng.uniform(5, 60))]
        boxes.append((boxes[0][0] + rng.uniform(-4, 4), boxes[0][1] + rng.uniform(-4, 4),
                      boxes[0][2] + rng.uniform(-4, 4), boxes[0][3] + rng.uniform(-4, 4)))
        scores = [[0.9 if c == cls else 0.0 for c in range(3)], [0.8 if c == cls else 0.0 for c in range(3)]]
        pred = rows(boxes, [1.0, 1.0], scores)
        b = np.stack([[r[0] - r[2] / 2, r[1] - r[3] / 2, r[0] + r[2] / 2, r[1] + r[3] / 2] for r in pred]) \
            + np.float32(cls * 7680)
        area = (b[:, 2] - b[:, 0]) * (b[:, 3] - b[:, 1])
        inter = max(np.float32(0), min(b[0, 2], b[1, 2]) - max(b[0, 0], b[1, 0])) * \
            max(np.float32(0), min(b[0, 3], b[1, 3]) - max(b[0, 1], b[1, 1]))
        iou = np.float32(inter / ((area[0] + area[1]) - inter))
        assert iou.dtype == np.float32
        if not 0 < iou < 1:
            continue
        assert len(assert_same(pred[None], iou_thres=float(iou))[0]) == 2
        below = np.nextafter(iou, np.float32(0))
        assert len(assert_same(pred[None], iou_thres=float(below))[0]) == 1


def test_score_ties_keep_the_lower_index():
    # rows 0..3 all score 0.5 * 1.0; 1 and 3 overlap 0 and 2 heavily
    boxes = [(0, 0, 10, 10), (0, 0, 10, 9), (50, 50, 60, 60), (50, 50, 60, 61)]
    pred = rows(boxes, [1.0] * 4, [[0.5]] * 4)
    out = assert_same(pred[None], iou_thres=0.5)[0].numpy()
    np.testing.assert_array_equal(out[:, :4], np.array([boxes[0], boxes[2]], np.float32))
    rev = pred[::-1].copy()  # reversed rows: now the other box of each pair comes first and wins
    out = assert_same(rev[None], iou_thres=0.5)[0].numpy()
    np.testing.assert_array_equal(out[:, :4], np.array([boxes[3], boxes[1]], np.float32))
    # class ties: the first best class wins
    pred = rows([(0, 0, 10, 10)], [1.0], [[0.2, 0.7, 0.7, 0.1]])
    assert assert_same(pred[None])[0][0, 5] == 1


def test_duplicates_all_suppressed_and_per_class():
    pred = np.repeat(rows([(5, 5, 25, 25)], [0.9], [[0.0, 0.8]]), 50, axis=0)
    out = assert_same(pred[None])[0]
    assert out.shape == (1, 6) and out[0, 5] == 1 and out[0, 4] == np.float32(0.9) * np.float32(0.8)
    # same box, different classes: kept by class-aware NMS, merged by agnostic NMS
    pred = rows([(0, 0, 10, 10)] * 3, [1.0] * 3, [[0.9, 0, 0], [0, 0.8, 0], [0, 0, 0.7]])
    assert len(assert_same(pred[None])[0]) == 3
    out = assert_same(pred[None], agnostic=True)[0]
    assert len(out) == 1 and out[0, 5] == 0
    out = assert_same(pred[None], classes=[1, 2])[0]
    assert out[:, 5].tolist() == [1, 2]
    assert len(assert_same(pred[None], classes=[])[0]) == 0
    assert assert_same(pred[None], classes=np.array([2]))[0][:, 5].tolist() == [2]
    # multi-label: one row can give several detections
    pred = rows([(0, 0, 10, 10)], [1.0], [[0.9, 0.3, 0.2]])
    assert assert_same(pred[None], multi_label=True, conf_thres=0.25)[0][:, 5].tolist() == [0, 1]


def test_empty_and_uneven_batches():
    assert [o.shape for o in batched_nms(torch.zeros(2, 0, 85))] == [(0, 6), (0, 6)]
    assert nms_reference(np.zeros((0, 85), np.float32)).shape == (0, 6)
    low = np.zeros((3, 10, 7), np.float32)
    low[..., 4] = 0.2  # all below conf 0.25
    assert [len(o) for o in assert_same(low)] == [0, 0, 0]
    rng = np.random.default_rng(4)
    pred = make_pred(rng, 4, 200, 3, coarse=False, extent=400)
    pred[1, :, 4] = 0.0  # nothing in image 1
    pred[2, 5:, 4] = 0.0  # few in image 2
    out = assert_same(pred, conf_thres=0.25, iou_thres=0.45, chunk=16)
    counts = [len(o) for o in out]
    assert counts[1] == 0 and 0 < counts[2] <= 5 and counts[0] > 10 and counts[3] > 10
    # max_det truncation keeps the best ones, in order
    full = nms_reference(pred[0], max_det=1000)
    np.testing.assert_array_equal(assert_same(pred[:1], max_det=7, chunk=3)[0].numpy(), full[:7])
    assert len(nms_reference(pred[0], max_det=0)) == 0 and len(batched_nms(torch.from_numpy(pred), max_det=0)[0]) == 0


def test_input_validation():
    with pytest.raises(ValueError, match=r"predictions must be \(N, 5\+nc\) with nc >= 1, got shape \(2, 3, 85\)"):
        nms_reference(np.zeros((2, 3, 85), np.float32))
    with pytest.raises(ValueError, match=r"must be \(B, N, 5\+nc\) with nc >= 1, got shape \(3, 5\)"):
        batched_nms(torch.zeros(3, 5))
    out = batched_nms(torch.rand(1, 5, 9, dtype=torch.float64))  # any float dtype; computed in float32
    assert out[0].dtype == torch.float32


def iou64(a, b):
    w = max(0.0, min(a[2], b[2]) - max(a[0], b[0]))
    h = max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
    inter = w * h
    union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter
    return inter / union if union > 0 else 0.0


@pytest.mark.parametrize("seed", range(6))
def test_reference_against_brute_force_properties(seed):
    """Re-derive the candidates independently (float64) and check the greedy invariants on the reference's output."""
    rng = np.random.default_rng(100 + seed)
    n, nc = 120, 3
    pred = make_pred(rng, 1, n, nc, coarse=False, extent=150)[0]
    conf, thr, agnostic = 0.2, float(rng.choice([0.3, 0.45, 0.6])), bool(seed % 2)
    out = nms_reference(pred, conf, thr, agnostic=agnostic, max_det=10_000)

    cands = []  # (score, cls, box) for rows with obj > conf and best cls*obj > conf
    for row in pred.astype(np.float64):
        if row[4] <= conf:
            continue
        s = row[5:] * row[4]
        c = int(np.argmax(s))
        if s[c] > conf:
            cx, cy, w, h = row[:4]
            cands.append((s[c], c, (cx - w / 2, cy - h / 2, cx + w / 2, cy + h / 2)))
    assert len(out) <= len(cands)
    kept = [(float(r[4]), int(r[5]), tuple(map(float, r[:4]))) for r in out]
    # every kept row is a candidate, scores descending
    for s, c, box in kept:
        assert any(abs(s - cs) < 1e-6 and c == cc and np.allclose(box, cb, atol=1e-4) for cs, cc, cb in cands)
    assert all(a[0] >= b[0] for a, b in zip(kept, kept[1:]))
    same = (lambda c1, c2: True) if agnostic else (lambda c1, c2: c1 == c2)
    eps = 1e-3
    # no two kept boxes of the same class overlap more than the threshold
    for (s1, c1, b1), (s2, c2, b2) in itertools.combinations(kept, 2):
        if same(c1, c2):
            assert iou64(b1, b2) <= thr + eps
    # every dropped candidate overlaps a kept box of the same class that scores at least as high
    kept_set = {(round(s, 6), c, tuple(np.round(b, 3))) for s, c, b in kept}
    for s, c, box in cands:
        if (round(s, 6), c, tuple(np.round(box, 3))) in kept_set:
            continue
        assert any(same(c, kc) and ks >= s - 1e-7 and iou64(box, kb) > thr - eps for ks, kc, kb in kept), (s, c, box)


@pytest.mark.cuda
def test_cuda_path_equals_reference():
    rng = np.random.default_rng(7)
    for trial in range(20):
        pred = make_pred(rng, 3, int(rng.integers(0, 2000)), 5, coarse=trial % 2 == 0, extent=300)
        kw = dict(conf_thres=0.2, iou_thres=float(rng.choice([0.3, 0.45, 0.5])), agnostic=bool(trial % 3 == 0),
                  multi_label=bool(trial % 4 == 0), max_det=int(rng.choice([5, 300])))
        fast = batched_nms(torch.from_numpy(pred).cuda(), chunk=int(rng.choice([7, 1024])), **kw)
        for b in range(len(pred)):
            assert fast[b].device.type == "cuda"
            np.testing.assert_array_equal(fast[b].cpu().numpy(), nms_reference(pred[b], **kw))
