"""NMS with ultralytics' YOLOv8 / YOLO11 semantics (no objectness): the batched torch path and the numpy reference
give exactly the same rows on randomized boxes with ties, and the reference keeps the greedy invariants against
candidates derived independently here."""
import itertools

import numpy as np
import pytest
import torch

from zoo.vision.nms import batched_nms, nms_reference


def make_pred(rng, b, n, nc, coarse=True):
    """Rows [cx, cy, w, h, cls_0 ..] with exact score ties (coarse levels), duplicated rows and clustered boxes."""
    p = np.zeros((b, n, 4 + nc), np.float32)
    p[..., 0:2] = rng.uniform(0, 100, (b, n, 2))
    p[..., 2:4] = rng.uniform(1, 40, (b, n, 2))
    if coarse:
        p[..., 0:4] = np.round(p[..., 0:4] * 2) / 2
        p[..., 4:] = rng.choice([0.0, 0.1, 0.25, 0.5, 0.75, 1.0], (b, n, nc))
    else:
        p[..., 4:] = rng.uniform(0, 1, (b, n, nc))
    if n >= 4:
        src = rng.integers(0, n, (b, n // 4))
        p[:, n // 2:n // 2 + n // 4] = p[np.arange(b)[:, None], src]
    return p


def test_randomized_equality_with_ties():
    rng = np.random.default_rng(8)
    for trial in range(40):
        b, n, nc = int(rng.integers(1, 4)), int(rng.integers(0, 200)), int(rng.integers(1, 6))
        pred = make_pred(rng, b, n, nc, coarse=trial % 3 != 0)
        kw = dict(conf_thres=float(rng.choice([0.0, 0.1, 0.25])), iou_thres=float(rng.choice([0.3, 0.5, 0.7])),
                  agnostic=bool(rng.integers(0, 2)), max_det=int(rng.choice([1, 5, 300])),
                  multi_label=bool(rng.integers(0, 2)), objectness=False)
        if rng.integers(0, 3) == 0:
            kw["classes"] = [int(c) for c in rng.choice(nc, size=int(rng.integers(1, nc + 1)), replace=False)]
        fast = batched_nms(torch.from_numpy(pred), chunk=int(rng.choice([3, 64, 1024])), **kw)
        for i in range(b):
            np.testing.assert_array_equal(fast[i].numpy(), nms_reference(pred[i], **kw), err_msg=str(kw))


def iou64(a, b):
    w = max(0.0, min(a[2], b[2]) - max(a[0], b[0]))
    h = max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
    inter = w * h
    union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter
    return inter / union if union > 0 else 0.0


@pytest.mark.parametrize("seed", range(3))
def test_reference_against_independent_candidates(seed):
    """Candidates re-derived in float64 (best class score > conf, no objectness), greedy invariants checked."""
    rng = np.random.default_rng(50 + seed)
    pred = make_pred(rng, 1, 120, 3, coarse=False)[0]
    conf, thr = 0.5, 0.7
    out = nms_reference(pred, conf, thr, objectness=False, max_det=10_000)
    cands = []
    for row in pred.astype(np.float64):
        c = int(np.argmax(row[4:]))
        if row[4 + c] > conf:
            cx, cy, w, h = row[:4]
            cands.append((row[4 + c], c, (cx - w / 2, cy - h / 2, cx + w / 2, cy + h / 2)))
    kept = [(float(r[4]), int(r[5]), tuple(map(float, r[:4]))) for r in out]
    assert 0 < len(kept) <= len(cands)
    assert all(a[0] >= b[0] for a, b in zip(kept, kept[1:]))
    for (s1, c1, b1), (s2, c2, b2) in itertools.combinations(kept, 2):
        assert c1 != c2 or iou64(b1, b2) <= thr + 1e-3
    kept_set = {(round(s, 6), c, tuple(np.round(b, 3))) for s, c, b in kept}
    for s, c, box in cands:
        if (round(s, 6), c, tuple(np.round(box, 3))) not in kept_set:
            assert any(c == kc and ks >= s - 1e-7 and iou64(box, kb) > thr - 1e-3 for ks, kc, kb in kept)


def test_objectness_column_is_not_read():
    """Without objectness, column 4 is class 0's score: a row whose class-0 score is high is a class-0 box."""
    pred = np.array([[50, 50, 10, 10, 0.9, 0.1], [10, 10, 4, 4, 0.1, 0.8]], np.float32)
    out = nms_reference(pred, 0.25, 0.7, objectness=False)
    assert out[:, 5].tolist() == [0.0, 1.0] and np.allclose(out[:, 4], [0.9, 0.8])
    with pytest.raises(ValueError, match=r"\(N, 4\+nc\)"):
        nms_reference(np.zeros((3, 4), np.float32), objectness=False)
