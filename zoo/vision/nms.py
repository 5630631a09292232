"""YOLOv5 v7.0 ``non_max_suppression`` semantics, twice: a plain numpy reference and a vectorised torch fast path.

Per image (pred rows: [cx, cy, w, h, obj, cls_0 .. cls_{nc-1}]):

1. candidates: ``obj > conf_thres``; class scores become ``cls * obj``;
2. boxes xywh -> xyxy;
3. best class (first index on ties) with ``score > conf_thres``; with ``multi_label`` every (row, class) pair with
   ``score > conf_thres``, in row-major order;
4. optional ``classes`` filter;
5. sort by score, descending, **stable** (equal scores keep candidate order: lower prediction index first), keep the
   first ``max_nms``;
6. greedy suppression on boxes offset by ``cls * max_wh`` (0 when agnostic): a box is dropped when its IoU with an
   already kept box is ``> iou_thres``;
7. keep the first ``max_det``. Rows out: [x1, y1, x2, y2, score, cls] float32.

``objectness=False`` gives ultralytics' YOLOv8 / YOLO11 semantics on rows [cx, cy, w, h, cls_0 .. cls_{nc-1}]
(the (B, 4 + nc, A) output transposed): no step 1, the class scores are used as they are; the rest is the same.

With ``nm`` > 0 (segmentation), the last ``nm`` columns of each prediction are mask coefficients, not classes:
they are carried along and appended to the kept rows, [x1, y1, x2, y2, score, cls, coefficients...].

Both implementations compute in float32 with the same operations in the same order (torchvision's IoU formula:
``inter / ((area_i + area_j) - inter)`` on the offset boxes; thresholds compared as float32), so their results are
exactly equal, ties and IoU-at-threshold cases included. Upstream's sort (and torchvision's) is not stable; that is
the only intended difference from upstream (it decides which of two equal-score boxes wins). Upstream's time limit is
not reproduced.
"""

from __future__ import annotations

from typing import Sequence

import numpy as np

MAX_WH = 7680  # class offset (pixels) that separates classes in one batched NMS
MAX_NMS = 30000  # candidates kept after the sort
FIXED_POINT_ITERS = 8  # batched_nms: iterations of the vectorised greedy pass before the row-by-row scan
MIN_BLOCK = 128  # batched_nms: the smallest block of candidates the greedy pass takes at once


def _classes_array(classes: Sequence[int] | None) -> np.ndarray | None:
    return None if classes is None else np.asarray([int(c) for c in classes], dtype=np.float32).reshape(-1)


def xywh2xyxy_np(x: np.ndarray) -> np.ndarray:
    y = np.empty_like(x)
    half_w, half_h = x[..., 2] / 2, x[..., 3] / 2
    y[..., 0] = x[..., 0] - half_w
    y[..., 1] = x[..., 1] - half_h
    y[..., 2] = x[..., 0] + half_w
    y[..., 3] = x[..., 1] + half_h
    return y


def _check_pred(shape: Sequence[int], batched: bool, objectness: bool = True, nm: int = 0) -> None:
    want = 3 if batched else 2
    fields = 5 if objectness else 4
    if len(shape) != want or shape[-1] < fields + 1 + nm or nm < 0:
        form = f"(B, N, {fields}+nc)" if batched else f"(N, {fields}+nc)"
        raise ValueError(f"predictions must be {form} with nc >= 1, got shape {tuple(shape)}")


def nms_reference(pred: np.ndarray, conf_thres: float = 0.25, iou_thres: float = 0.45,
                  classes: Sequence[int] | None = None, agnostic: bool = False, max_det: int = 300,
                  multi_label: bool = False, max_nms: int = MAX_NMS, max_wh: int = MAX_WH,
                  objectness: bool = True, nm: int = 0) -> np.ndarray:
    """One image: pred (N, 5+nc[+nm]) (or (N, 4+nc[+nm]) without objectness) -> detections (K, 6[+nm])
    [x1, y1, x2, y2, score, cls(, mask coefficients)], float32. A plain loop."""
    _check_pred(np.shape(pred), batched=False, objectness=objectness, nm=nm)
    x = np.asarray(pred, dtype=np.float32)
    conf_t, iou_t = np.float32(conf_thres), np.float32(iou_thres)
    empty = np.zeros((0, 6 + nm), dtype=np.float32)

    if objectness:
        x = x[x[:, 4] > conf_t]
    if not len(x) or max_det <= 0:
        return empty
    carried, x = x[:, x.shape[1] - nm:], x[:, :x.shape[1] - nm]
    scores = x[:, 5:] * x[:, 4:5] if objectness else x[:, 4:]
    box = xywh2xyxy_np(x[:, :4])
    if multi_label:
        i, j = np.nonzero(scores > conf_t)  # row-major order
        det = np.concatenate([box[i], scores[i, j][:, None], j[:, None].astype(np.float32), carried[i]], 1)
    else:
        j = scores.argmax(1)  # first maximum on ties
        conf = scores[np.arange(len(scores)), j]
        det = np.concatenate([box, conf[:, None], j[:, None].astype(np.float32), carried], 1)[conf > conf_t]
    cls_filter = _classes_array(classes)
    if cls_filter is not None:
        det = det[(det[:, 5:6] == cls_filter).any(1)]
    if not len(det):
        return empty
    det = det[np.argsort(-det[:, 4], kind="stable")][:max_nms]

    offset = det[:, 5:6] * np.float32(0 if agnostic else max_wh)
    b = det[:, :4] + offset
    area = (b[:, 2] - b[:, 0]) * (b[:, 3] - b[:, 1])
    n = len(det)
    suppressed = np.zeros(n, dtype=bool)
    keep: list[int] = []
    with np.errstate(invalid="ignore", divide="ignore"):
        for i in range(n):
            if suppressed[i]:
                continue
            keep.append(i)
            if len(keep) == max_det:
                break
            r = slice(i + 1, n)
            w = np.maximum(np.float32(0), np.minimum(b[i, 2], b[r, 2]) - np.maximum(b[i, 0], b[r, 0]))
            h = np.maximum(np.float32(0), np.minimum(b[i, 3], b[r, 3]) - np.maximum(b[i, 1], b[r, 1]))
            inter = w * h
            iou = inter / ((area[i] + area[r]) - inter)
            suppressed[r] |= iou > iou_t
    return det[keep]


OVERLAPS = ("union", "min")


def _iou_matrix(a, b, overlap: str = "union"):
    """float32 overlap of every box in a (..., M, 4) with every box in b (..., N, 4): (..., M, N).

    "union": IoU, inter / (area_a + area_b - inter), in continuous coordinates (torchvision's formula).
    "min": inter / min(area_a, area_b), in inclusive pixel units (width x2 - x1 + 1), as MTCNN's original 'Min'
    overlap: a small box inside a big one counts as a full overlap."""
    import torch

    one = 1.0 if overlap == "min" else 0.0
    # Each coordinate as its own contiguous (..., M, 1) column and (..., 1, N) row: broadcasting over contiguous
    # vectors is several times faster than over the strided views of the (..., 4) boxes.
    ax1, ay1, ax2, ay2 = (a[..., i].contiguous()[..., :, None] for i in range(4))
    bx1, by1, bx2, by2 = (b[..., i].contiguous()[..., None, :] for i in range(4))
    area_a = (ax2 - ax1 + one) * (ay2 - ay1 + one)
    area_b = (bx2 - bx1 + one) * (by2 - by1 + one)
    # The (M, N) matrices are the cost (a thousand kept boxes of random weights against a block of candidates):
    # computed in place where the formula allows; the operations and their order are the formula's.
    inter = _side(ax1, ax2, bx1, bx2, one).mul_(_side(ay1, ay2, by1, by2, one))
    if overlap == "min":
        return inter.div_(torch.minimum(area_a, area_b))
    return inter.div_((area_a + area_b).sub_(inter))


def _side(a_lo, a_hi, b_lo, b_hi, one: float):
    """max(0, min(a_hi, b_hi) - max(a_lo, b_lo) + one): the overlap of two intervals, broadcast."""
    import torch

    side = torch.minimum(a_hi, b_hi).sub_(torch.maximum(a_lo, b_lo))
    if one:
        side.add_(one)
    return side.clamp_(min=0)


def _greedy_rows(sup, alive):
    """Sequential greedy pass over a (B, T, T) strictly upper-triangular suppression matrix, row by row on the host."""
    import torch

    sup_h, keep = sup.cpu().numpy(), alive.cpu().numpy().copy()
    for kb, sb in zip(keep, sup_h):
        for i in range(len(kb)):
            if kb[i]:
                kb &= ~sb[i]
    return torch.from_numpy(keep).to(alive.device)


def batched_nms(pred, conf_thres: float = 0.25, iou_thres: float = 0.45, classes: Sequence[int] | None = None,
                agnostic: bool = False, max_det: int = 300, multi_label: bool = False, max_nms: int = MAX_NMS,
                max_wh: int = MAX_WH, chunk: int = 1024, objectness: bool = True, nm: int = 0) -> list:
    """pred (B, N, 5+nc[+nm]) (or (B, N, 4+nc[+nm]) without objectness) torch tensor -> list of B (K_i, 6[+nm])
    float32 tensors, on pred's device. Torch ops only.

    All images are processed together: the candidates of each image are sorted (stable) into a padded (B, K) table;
    the greedy pass walks it in blocks of ``chunk`` candidates. In a block, suppression by boxes kept in earlier
    blocks is one IoU matrix, and the greedy order inside the block is the fixed point of
    ``keep[j] = not any(keep[i] and iou[i, j] > t for i < j)`` iterated from all-true: it is unique, so it equals
    the sequential greedy result, and it is reached after as many iterations as the longest suppression chain
    (A suppresses B, which would have suppressed C, ...). Chains longer than ``FIXED_POINT_ITERS`` (rare: rows of
    boxes sliding across an object) finish with a row-by-row scan of the same boolean matrix on the host.
    Memory is O(B * chunk * (chunk + max_det)); it stops as soon as every image has ``max_det`` boxes.
    """
    import torch

    _check_pred(tuple(pred.shape), batched=True, objectness=objectness, nm=nm)
    carried, x = pred[..., pred.shape[2] - nm:].float(), pred[..., :pred.shape[2] - nm].float()
    dev = x.device
    bs, n, _ = x.shape
    nc = x.shape[2] - (5 if objectness else 4)
    conf_t = torch.tensor(conf_thres, dtype=torch.float32, device=dev)
    iou_t = torch.tensor(iou_thres, dtype=torch.float32, device=dev)
    empty = [torch.zeros((0, 6 + nm), dtype=torch.float32, device=dev) for _ in range(bs)]
    if n == 0 or bs == 0:
        return empty

    if objectness:
        obj_ok = x[..., 4] > conf_t  # (B, N)
        scores = x[..., 5:] * x[..., 4:5]  # (B, N, nc)
    else:
        obj_ok = torch.ones((bs, n), dtype=torch.bool, device=dev)
        scores = x[..., 4:]
    box = torch.empty_like(x[..., :4])
    half_w, half_h = x[..., 2] / 2, x[..., 3] / 2
    box[..., 0] = x[..., 0] - half_w
    box[..., 1] = x[..., 1] - half_h
    box[..., 2] = x[..., 0] + half_w
    box[..., 3] = x[..., 1] + half_h

    if multi_label:  # candidates are (row, class) pairs in row-major order
        valid = obj_ok[..., None] & (scores > conf_t)  # (B, N, nc)
        cand_score = scores.reshape(bs, n * nc)
        cand_cls = torch.arange(nc, device=dev).repeat(n).expand(bs, n * nc)
        cand_row = torch.arange(n, device=dev).repeat_interleave(nc).expand(bs, n * nc)
        valid = valid.reshape(bs, n * nc)
    else:
        cand_cls = scores.argmax(2)  # first maximum on ties
        cand_score = scores.gather(2, cand_cls[..., None])[..., 0]
        cand_row = torch.arange(n, device=dev).expand(bs, n)
        valid = obj_ok & (cand_score > conf_t)
    if classes is not None:
        wanted = torch.tensor(sorted({int(c) for c in classes}), dtype=torch.long, device=dev)
        valid &= torch.isin(cand_cls, wanted)

    counts = valid.sum(1).clamp(max=max_nms)
    k = int(counts.max())
    if k == 0 or max_det <= 0:
        return empty
    # stable descending sort of the valid candidates; invalid ones are pushed behind with -inf
    key = torch.where(valid, cand_score, torch.full_like(cand_score, float("-inf")))
    order = torch.sort(key, dim=1, descending=True, stable=True).indices[:, :k]  # (B, K)
    ok = torch.arange(k, device=dev)[None, :] < counts[:, None]  # (B, K) real candidates
    s_score = cand_score.gather(1, order)
    s_cls = cand_cls.gather(1, order)
    s_row = cand_row.gather(1, order)
    s_box = box.gather(1, s_row[..., None].expand(bs, k, 4))
    s_carried = carried.gather(1, s_row[..., None].expand(bs, k, nm))
    det = torch.cat((s_box, s_score[..., None], s_cls[..., None].float(), s_carried), 2)  # (B, K, 6 + nm)
    offset_box = s_box + det[..., 5:6] * torch.tensor(0 if agnostic else max_wh, dtype=torch.float32, device=dev)
    keep = _greedy_keep(offset_box, ok, iou_t, max_det, chunk)
    return [det[b][keep[b]] for b in range(bs)]


def _greedy_keep(offset_box, ok, iou_t, max_det: int, chunk: int, overlap: str = "union"):
    """Greedy suppression over (B, K, 4) boxes sorted by descending score, `ok` (B, K) marking real candidates:
    (B, K) bool, the kept ones. A box is dropped when its overlap with an already kept box is > iou_t."""
    import torch

    bs, k, dev = offset_box.shape[0], offset_box.shape[1], offset_box.device
    keep = torch.zeros((bs, k), dtype=torch.bool, device=dev)
    kept_boxes = torch.zeros((bs, max_det + 1, 4), dtype=torch.float32, device=dev)  # last row: scatter dump
    kept_n = torch.zeros(bs, dtype=torch.long, device=dev)
    slots = torch.arange(max_det, device=dev)
    s = 0
    while s < k:
        # The result does not depend on the blocks' size, so a block is no larger than about twice what an image
        # still needs (capped by its candidates left): the last blocks then cost (kept x need), not (kept x chunk).
        need = int(torch.minimum(max_det - kept_n, ok[:, s:].sum(1)).max())
        e = min(s + min(chunk, max(MIN_BLOCK, 2 * need)), k)
        cb = offset_box[:, s:e]  # (B, T, 4)
        alive = ok[:, s:e] & (kept_n < max_det)[:, None]
        # suppressed by boxes kept in earlier blocks
        m = int(kept_n.max())
        if m:
            prior = (_iou_matrix(kept_boxes[:, :m], cb, overlap) > iou_t) & \
                (slots[None, :m] < kept_n[:, None])[..., None]
            alive &= ~prior.any(1)
        # greedy inside the block: fixed point over the strictly upper triangle
        t = e - s
        sup = (_iou_matrix(cb, cb, overlap) > iou_t) & torch.ones(t, t, dtype=torch.bool, device=dev).triu(1)
        cur = alive
        sup_f = sup.float()  # "suppressed by a kept box" as a (B, 1, T) x (B, T, T) product: no (B, T, T) per step
        for _ in range(FIXED_POINT_ITERS):
            nxt = alive & ~(torch.bmm(cur[:, None, :].float(), sup_f)[:, 0] > 0)
            if torch.equal(nxt, cur):
                break
            cur = nxt
        else:  # a long suppression chain: finish with the sequential scan over the same matrix
            cur = _greedy_rows(sup, alive)
        # max_det: earlier decisions never depend on later ones, so truncating here is exact
        rank = kept_n[:, None] + cur.long().cumsum(1)  # 1-based slot of each kept box
        cur &= rank <= max_det
        keep[:, s:e] = cur
        dest = torch.where(cur, rank - 1, torch.full_like(rank, max_det))
        kept_boxes.scatter_(1, dest[..., None].expand(bs, t, 4), cb)
        kept_n += cur.sum(1)
        if bool((kept_n >= max_det).all()):
            break
        s = e
    return keep


def nms_indices(boxes, scores, iou_thres: float, overlap: str = "union", groups=None, chunk: int = 1024):
    """Greedy NMS on xyxy boxes (N, 4) with scores (N,), torch, on their device: the kept indices (int64), by
    descending score (stable: equal scores keep index order). Boxes of different `groups` (N,) ints (images,
    pyramid scales) never suppress each other. `overlap` is "union" (IoU) or "min" (see _iou_matrix); a box is
    dropped when its overlap with a kept box is > iou_thres. The greedy pass is batched_nms's."""
    import torch

    if overlap not in OVERLAPS:
        raise ValueError(f"overlap must be one of {OVERLAPS}, got {overlap!r}")
    boxes = boxes.float()
    if not len(boxes):
        return torch.zeros(0, dtype=torch.long, device=boxes.device)
    order = torch.sort(scores.float(), descending=True, stable=True).indices
    b = boxes[order]
    if groups is not None:  # shift each group clear of the others (torchvision's batched-NMS trick)
        span = (b.max() - b.min() + 2).clamp(min=1)
        b = b - b.min() + groups[order].to(b.dtype)[:, None] * span
    iou_t = torch.tensor(iou_thres, dtype=torch.float32, device=b.device)
    ok = torch.ones((1, len(b)), dtype=torch.bool, device=b.device)
    keep = _greedy_keep(b[None], ok, iou_t, len(b), chunk, overlap)[0]
    return order[keep]


def count_matches(reference, other, iou_thres: float = 0.5) -> int:
    """How many `reference` detections (K, 6) have a match in `other` (M, 6): same class, IoU >= iou_thres, each
    `other` row used once, reference rows taken by descending score (the usual detection-agreement count)."""
    import torch

    reference, other = torch.as_tensor(reference).float().cpu(), torch.as_tensor(other).float().cpu()
    if not len(reference) or not len(other):
        return 0
    iou = _iou_matrix(reference[:, :4], other[:, :4])
    iou[reference[:, 5:6] != other[:, 5].unsqueeze(0)] = -1
    used = torch.zeros(len(other), dtype=torch.bool)
    matched = 0
    for i in torch.argsort(reference[:, 4], descending=True, stable=True).tolist():
        candidates = torch.where(used, torch.full_like(iou[i], -1), iou[i])
        best = int(candidates.argmax())
        if candidates[best] >= iou_thres:
            used[best] = True
            matched += 1
    return matched
