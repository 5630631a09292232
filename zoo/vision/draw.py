"""Drawing what a record holds, one function per kind of thing: boxes, masks, keypoints and skeletons, rotated
boxes, top-5 classes, faces and their landmarks, semantic classes, depth colour maps (OpenCV only).

Every function draws from `infer`'s JSON records (the same records `serve` answers), in place on a BGR uint8 image,
and returns it; `draw_record` draws all that one record holds on a copy. So `infer --out`, the upload page of
`serve` and `infer --triton` show the same picture for the same record.
"""
from __future__ import annotations

import base64
import colorsys
from functools import lru_cache
from typing import Sequence

import cv2
import numpy as np

from .keypoints import VISIBLE, skeleton_for
from .masks import decode_rle

FONT = cv2.FONT_HERSHEY_SIMPLEX
FACE_COLOR = (0, 200, 0)
LANDMARK_COLOR = (0, 255, 255)
MASK_ALPHA = 0.45


@lru_cache(maxsize=4096)
def class_color(cls: int) -> tuple[int, int, int]:
    """A deterministic, well-spread BGR colour for a class index (golden-ratio hue steps)."""
    h = (cls * 0.618033988749895) % 1.0
    r, g, b = colorsys.hsv_to_rgb(h, 0.85, 0.95)
    return int(b * 255), int(g * 255), int(r * 255)


def line_width(image: np.ndarray) -> int:
    h, w = image.shape[:2]
    return max(round((h + w) / 2 * 0.003), 2)


def label(d: dict) -> str:
    return f"{d.get('class_name', d.get('class_id', ''))} {d['score']:.2f}"


@lru_cache(maxsize=16384)
def _text_size(text: str, scale: float, thickness: int):
    return cv2.getTextSize(text, FONT, scale, thickness)


def draw_label(image: np.ndarray, text: str, x: int, y: int, color, lw: int | None = None) -> None:
    """`text` on a filled box of `color`, above (x, y) when there is room, else below it."""
    lw = lw or line_width(image)
    scale, thickness = lw / 3, max(lw - 1, 1)
    (tw, th), base = _text_size(text, scale, thickness)
    top = y - th - base - 3 if y - th - base - 3 >= 0 else y
    # an axis-aligned filled box has no edge to smooth: anti-aliasing would only cost time (a thousand boxes of
    # random weights per image)
    cv2.rectangle(image, (x, top), (x + tw + 2, top + th + base + 3), color, -1)
    luminance = 0.114 * color[0] + 0.587 * color[1] + 0.299 * color[2]
    cv2.putText(image, text, (x + 1, top + th + 1), FONT, scale, (0, 0, 0) if luminance > 150 else (255, 255, 255),
                thickness, cv2.LINE_AA)


def _corner(image: np.ndarray, x: float, y: float) -> tuple[int, int]:
    h, w = image.shape[:2]  # plain min/max: np.clip on one number costs several microseconds
    return int(min(max(x, 0), w - 1)), int(min(max(y, 0), h - 1))


def draw_boxes(image: np.ndarray, detections: Sequence[dict]) -> np.ndarray:
    """Axis-aligned boxes ({"box": [x1, y1, x2, y2], "score", "class_id", "class_name"}) and "name 0.87"."""
    lw = line_width(image)
    for d in detections:
        color = class_color(int(d["class_id"]))
        p1, p2 = _corner(image, *d["box"][:2]), _corner(image, *d["box"][2:4])
        # axis-aligned: anti-aliasing would only round the corners, at 2.8x the time (measured over 1000 boxes)
        cv2.rectangle(image, p1, p2, color, lw)
        draw_label(image, label(d), p1[0], p1[1], color, lw)
    return image


def draw_masks(image: np.ndarray, detections: Sequence[dict], alpha: float = MASK_ALPHA) -> np.ndarray:
    """Each detection's mask ({"mask": COCO RLE of the image's size}) blended in its class colour, `alpha`
    opaque; masks of another size than the image are skipped."""
    for d in detections:
        if "mask" not in d:
            continue
        mask = decode_rle(d["mask"])
        if mask.shape != image.shape[:2]:
            continue
        color = np.asarray(class_color(int(d["class_id"])), np.float32)
        region = image[mask].astype(np.float32)
        image[mask] = np.clip(region * (1 - alpha) + color * alpha + 0.5, 0, 255).astype(np.uint8)
    return image


def draw_keypoints(image: np.ndarray, detections: Sequence[dict], radius: int | None = None) -> np.ndarray:
    """Each detection's keypoints ({"keypoints": [[x, y] or [x, y, visibility], ...]}): the COCO skeleton for
    17 points, plain points otherwise; a point below 0.5 visibility or outside the image is not drawn."""
    h, w = image.shape[:2]
    r = radius or max(round((h + w) / 2 * 0.004), 2)
    for d in detections:
        person = np.asarray(d.get("keypoints") or [], np.float32)
        if person.ndim != 2 or not len(person):
            continue
        shown = person[:, 2] >= VISIBLE if person.shape[1] == 3 else np.ones(len(person), bool)
        shown &= (person[:, 0] >= 0) & (person[:, 0] <= w) & (person[:, 1] >= 0) & (person[:, 1] <= h)
        points = [(int(round(x)), int(round(y))) for x, y in person[:, :2]]
        for limb, (a, b) in enumerate(skeleton_for(len(person))):
            if shown[a] and shown[b]:
                cv2.line(image, points[a], points[b], class_color(limb), max(r // 2, 1), cv2.LINE_AA)
        for k, (point, ok) in enumerate(zip(points, shown)):
            if ok:
                cv2.circle(image, point, r, class_color(k), -1, cv2.LINE_AA)
    return image


def draw_rotated_boxes(image: np.ndarray, detections: Sequence[dict]) -> np.ndarray:
    """Rotated boxes by their four corners ({"corners": [[x, y] x 4], "score", "class_id", "class_name"})."""
    lw = line_width(image)
    for d in detections:
        color = class_color(int(d["class_id"]))
        pts = np.round(np.asarray(d["corners"], np.float32)).astype(np.int32)
        cv2.polylines(image, [pts], True, color, lw, cv2.LINE_AA)
        draw_label(image, label(d), *_corner(image, pts[:, 0].min(), pts[:, 1].min()), color)
    return image


def draw_top_classes(image: np.ndarray, top: Sequence[dict]) -> np.ndarray:
    """A classifier's top classes ([{"class_id", "score", "class_name"}], best first), one line each at the top
    left, the best in its class colour."""
    lw = line_width(image)
    y = 0
    for rank, t in enumerate(top):
        color = class_color(int(t["class_id"])) if rank == 0 else (40, 40, 40)
        (_, th), base = cv2.getTextSize("Ag", FONT, lw / 3, max(lw - 1, 1))
        y += th + base + 4
        draw_label(image, f"{t.get('class_name', t['class_id'])} {t['score']:.3f}", 0, y, color)
    return image


def draw_faces(image: np.ndarray, faces: Sequence[dict]) -> np.ndarray:
    """Faces ({"box", "score", "landmarks": five [x, y]}): the box with "face 0.99", the landmarks as dots."""
    lw = line_width(image)
    r = max(round(sum(image.shape[:2]) / 2 * 0.004), 2)
    for f in faces:
        p1, p2 = _corner(image, *f["box"][:2]), _corner(image, *f["box"][2:4])
        cv2.rectangle(image, p1, p2, FACE_COLOR, lw, cv2.LINE_AA)
        draw_label(image, f"face {f['score']:.2f}", p1[0], p1[1], FACE_COLOR)
        for x, y in f.get("landmarks") or []:
            cv2.circle(image, (int(round(x)), int(round(y))), r, LANDMARK_COLOR, -1, cv2.LINE_AA)
    return image


def draw_record(image: np.ndarray, record: dict) -> np.ndarray:
    """A copy of `image` with all that `record` holds drawn: masks under everything, then boxes or rotated
    boxes, keypoints, top classes, faces and text lines. A record without any of these gives the image unchanged."""
    out = image.copy()
    detections = record.get("detections") or []
    draw_masks(out, detections)
    draw_masks(out, record.get("segments") or [])  # semantic segmentation: one mask per class present
    draw_depth(out, record.get("depth") or {})
    draw_boxes(out, [d for d in detections if "box" in d])
    draw_rotated_boxes(out, [d for d in detections if "corners" in d])
    draw_keypoints(out, detections)
    draw_top_classes(out, record.get("top") or [])
    draw_faces(out, record.get("faces") or [])
    draw_text_lines(out, record.get("lines") or [])
    return out


def draw_text_lines(image: np.ndarray, lines: Sequence[dict]) -> np.ndarray:
    """Each text line's four-corner box (PP-OCR records), in place; the text itself is drawn by zoo.ppocr.draw,
    which needs a CJK font."""
    for line in lines:
        cv2.polylines(image, [np.asarray(line["box"], np.int32).reshape(-1, 1, 2)], True, (0, 200, 0),
                      line_width(image), cv2.LINE_AA)
    return image


def draw_depth(image: np.ndarray, depth: dict) -> np.ndarray:
    """A depth record's map ({"png_base64": the 16-bit log-depth PNG, zoo.vision.depth_map}) as a colour map over
    the whole image, in place; a record without it, or of another size, leaves the image as it is."""
    from .depth_map import colorize_log_depth, decode_log_depth
    if "png_base64" not in depth:
        return image
    data = np.frombuffer(base64.b64decode(depth["png_base64"]), np.uint8)
    values = cv2.imdecode(data, cv2.IMREAD_UNCHANGED)
    if values is None or values.shape != image.shape[:2]:
        return image
    image[:] = colorize_log_depth(decode_log_depth(values))
    return image
