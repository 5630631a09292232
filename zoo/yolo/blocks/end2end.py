"""The end-to-end (NMS-free) selection of YOLOv10's and YOLO26's one-to-one heads, inside the network.

From the decoded one-to-one predictions (B, 4 + nc + extra, A) (boxes xyxy in input pixels, or an OBB's rotated
xywh; sigmoid scores; mask coefficients, keypoints or angle), the rows `(B, k, 6 + extra)` =
`[box(4), score, class, extra]` with k = min(max_det, A), as ultralytics' eval output:
1. the k anchors whose best class score is highest (top-k over A of the per-anchor maximum);
2. the k best (anchor, class) pairs among those anchors' k x nc scores (top-k over the flattened scores);
3. class = the pair's class, box and extra gathered from the pair's anchor.
Among equal scores the order may differ from upstream's.

TensorRT's top-k layer takes k <= 3840 over an axis of any length; ultralytics' own TensorRT export splits the
top-k into 8 groups (top-k per group, then over the winners) for its static engines. The zoo takes each top-k in
one layer: the same values, one layer instead of three, and it works with a dynamic batch; `--max-det` above 3840
is refused in one line.
"""
from __future__ import annotations

import numpy as np
import torch

import layers
from zoo.trt_api import trt
from zoo.yolo.registry import TableError

MAX_TOPK = 3840  # TensorRT's limit on k


def check_max_det(max_det: int) -> int:
    if not 1 <= int(max_det) <= MAX_TOPK:
        raise TableError(f"--max-det {max_det}: the end-to-end head takes 1..{MAX_TOPK} detections (TensorRT's "
                         "top-k limit)")
    return int(max_det)


# ----------------------------------------------------------------------------------------- reference module


def select_rows(predictions: torch.Tensor, nc: int, max_det: int) -> torch.Tensor:
    """(B, 4 + nc + extra, A) -> (B, min(max_det, A), 6 + extra), in PyTorch."""
    rows = predictions.transpose(1, 2)
    boxes, scores, extra = rows[..., :4], rows[..., 4:4 + nc], rows[..., 4 + nc:]
    k = min(max_det, rows.shape[1])
    anchors = scores.amax(-1).topk(k, dim=1).indices                                   # (B, k)
    candidates = scores.gather(1, anchors[..., None].expand(-1, -1, nc))               # (B, k, nc)
    best, flat = candidates.transpose(1, 2).flatten(1).topk(k, dim=1)                  # over (class, row) pairs
    classes, picked = flat // k, flat % k
    anchor = anchors.gather(1, picked)

    def take(x):
        return x.gather(1, anchor[..., None].expand(-1, -1, x.shape[-1]))

    return torch.cat([take(boxes), best[..., None], classes[..., None].to(rows.dtype), take(extra)], -1)


def align_rows(got: torch.Tensor, expected: torch.Tensor) -> torch.Tensor:
    """`got`'s rows (B, k, C) permuted, per image, to face the `expected` row each is nearest to (max abs difference
    over the row; greedy, nearest pairs first). Two executors list rows of equal or nearly equal scores in different
    orders; a permutation hides no wrong value."""
    aligned = []
    for g, e in zip(got.float(), expected.float()):
        distance = torch.cdist(e.double(), g.double(), p=float("inf"))
        order = torch.argsort(distance.flatten())
        taken_e, taken_g, pick = set(), set(), [0] * len(e)
        for flat in order.tolist():
            i, j = divmod(flat, len(g))
            if i in taken_e or j in taken_g:
                continue
            taken_e.add(i), taken_g.add(j)
            pick[i] = j
            if len(taken_e) == len(e):
                break
        aligned.append(g[pick])
    return torch.stack(aligned) if aligned else got


# ----------------------------------------------------------------------------------------------- the network


def _batched_gather(net, data, indices, axis: int, name: str):
    """data[b] gathered along `axis` with indices[b] (TensorRT's DEFAULT gather with one elementwise dim)."""
    layer = net.add_gather(data, indices, axis)
    layer.num_elementwise_dims = 1
    return layers.named(layer, name)


def _channels(net, x, start: int, stop: int, name: str):
    return layers.named(net.add_gather(x, layers.constant(net, np.arange(start, stop, dtype=np.int32),
                                                           f"{name}/indices"), 1), name)


def _int_constant(net, value: int, name: str):
    return layers.constant(net, np.full((1, 1), value, np.int32), name)


def select_rows_network(net, predictions, nc: int, max_det: int, name: str):
    """The same selection on the network: predictions (B, 4 + nc + extra, A) FP32 -> (B, k, 6 + extra) named
    `name`; the layers inside are named `<name>/select/...` (the decode before it has its own `<name>/...`
    tensors, and a name is one tensor)."""
    channels, anchors_total = predictions.shape[1], predictions.shape[2]
    inner = f"{name}/select"
    k = min(check_max_det(max_det), anchors_total)
    scores = _channels(net, predictions, 4, 4 + nc, f"{inner}/scores")                    # (B, nc, A)
    best = layers.named(net.add_reduce(scores, trt.ReduceOperation.MAX, 1 << 1, False), f"{inner}/best")  # (B, A)
    first = net.add_topk(best, trt.TopKOperation.MAX, k, 1 << 1)
    layers.named(first, f"{inner}/topk_anchors")
    anchors = first.get_output(1)                                                        # (B, k) int32
    candidates = _batched_gather(net, scores, anchors, 2, f"{inner}/candidates")        # (B, nc, k)
    flat = layers.reshape(net, candidates, (0, nc * k), f"{inner}/pairs")
    second = net.add_topk(flat, trt.TopKOperation.MAX, k, 1 << 1)
    layers.named(second, f"{inner}/topk_pairs")
    score, pair = second.get_output(0), second.get_output(1)                             # (B, k)
    classes = layers.named(net.add_elementwise(pair, _int_constant(net, k, f"{inner}/k"),
                                               trt.ElementWiseOperation.FLOOR_DIV), f"{inner}/class_index")
    taken = layers.named(net.add_elementwise(classes, _int_constant(net, k, f"{inner}/k2"),
                                             trt.ElementWiseOperation.PROD), f"{inner}/class_offset")
    picked = layers.named(net.add_elementwise(pair, taken, trt.ElementWiseOperation.SUB), f"{inner}/picked")
    anchor = _batched_gather(net, anchors, picked, 1, f"{inner}/anchor")                 # (B, k)
    parts = [_channels(net, predictions, 0, 4, f"{inner}/boxes")]
    if channels > 4 + nc:
        parts.append(_channels(net, predictions, 4 + nc, channels, f"{inner}/extra"))
    kept = _batched_gather(net, layers.concat(net, parts, f"{inner}/carried", axis=1) if len(parts) > 1 else parts[0],
                           anchor, 2, f"{inner}/gathered")                                # (B, 4 + extra, k)
    kept = layers.transpose(net, kept, (0, 2, 1), f"{inner}/rows")
    score = layers.reshape(net, score, (0, k, 1), f"{inner}/score")
    cls = layers.reshape(net, layers.cast(net, classes, trt.float32, f"{inner}/class_float"), (0, k, 1),
                         f"{inner}/class")
    box = layers.named(net.add_gather(kept, layers.constant(net, np.arange(4, dtype=np.int32), f"{inner}/box_i"), 2),
                       f"{inner}/box")
    pieces = [box, score, cls]
    if channels > 4 + nc:
        pieces.append(layers.named(net.add_gather(kept, layers.constant(
            net, np.arange(4, channels - nc, dtype=np.int32), f"{inner}/extra_i"), 2), f"{inner}/extra_rows"))
    return layers.concat(net, pieces, name, axis=2)
