"""Drawing detections on an image (OpenCV only)."""

from __future__ import annotations

import colorsys
from typing import Mapping, Sequence

import cv2
import numpy as np


def class_color(cls: int) -> tuple[int, int, int]:
    """A deterministic, well-spread BGR colour for a class index (golden-ratio hue steps)."""
    h = (cls * 0.618033988749895) % 1.0
    r, g, b = colorsys.hsv_to_rgb(h, 0.85, 0.95)
    return int(b * 255), int(g * 255), int(r * 255)


def _name(names: Sequence[str] | Mapping[int, str] | None, cls: int) -> str:
    if names is None:
        return str(cls)
    if isinstance(names, Mapping):
        return str(names.get(cls, cls))
    return str(names[cls]) if 0 <= cls < len(names) else str(cls)


def draw_detections(image_bgr: np.ndarray, detections, class_names: Sequence[str] | Mapping[int, str] | None = None,
                    line_width: int | None = None) -> np.ndarray:
    """A copy of ``image_bgr`` with each detection [x1, y1, x2, y2, score, cls] drawn as a box and "name 0.87"."""
    out = image_bgr.copy()
    dets = np.asarray(detections.cpu() if hasattr(detections, "cpu") else detections, dtype=np.float32)
    if dets.size == 0:
        return out
    h, w = out.shape[:2]
    lw = line_width or max(round((h + w) / 2 * 0.003), 2)
    font_scale = lw / 3
    thickness = max(lw - 1, 1)
    for x1, y1, x2, y2, score, cls in dets.reshape(-1, 6):
        c = int(cls)
        color = class_color(c)
        p1 = (int(np.clip(x1, 0, w - 1)), int(np.clip(y1, 0, h - 1)))
        p2 = (int(np.clip(x2, 0, w - 1)), int(np.clip(y2, 0, h - 1)))
        cv2.rectangle(out, p1, p2, color, lw, cv2.LINE_AA)
        label = f"{_name(class_names, c)} {score:.2f}"
        (tw, th), base = cv2.getTextSize(label, cv2.FONT_HERSHEY_SIMPLEX, font_scale, thickness)
        above = p1[1] - th - base - 3 >= 0
        top = p1[1] - th - base - 3 if above else p1[1]
        cv2.rectangle(out, (p1[0], top), (p1[0] + tw + 2, top + th + base + 3), color, -1, cv2.LINE_AA)
        luminance = 0.114 * color[0] + 0.587 * color[1] + 0.299 * color[2]
        text_color = (0, 0, 0) if luminance > 150 else (255, 255, 255)
        cv2.putText(out, label, (p1[0] + 1, top + th + 1), cv2.FONT_HERSHEY_SIMPLEX, font_scale, text_color,
                    thickness, cv2.LINE_AA)
    return out


def draw_points(image_bgr: np.ndarray, points, color: tuple[int, int, int] = (0, 255, 255),
                radius: int | None = None) -> np.ndarray:
    """A copy of ``image_bgr`` with each (x, y) of ``points`` (..., 2) drawn as a filled dot (e.g. face landmarks)."""
    out = image_bgr.copy()
    pts = np.asarray(points.cpu() if hasattr(points, "cpu") else points, dtype=np.float32).reshape(-1, 2)
    r = radius or max(round(sum(out.shape[:2]) / 2 * 0.004), 2)
    for x, y in pts:
        cv2.circle(out, (int(round(float(x))), int(round(float(y)))), r, color, -1, cv2.LINE_AA)
    return out


def draw_record(image_bgr: np.ndarray, record: dict) -> np.ndarray:
    """A copy of ``image_bgr`` with the detections of an `infer` record ({"detections": [{box, score, class_id,
    class_name}]}) drawn; records without detections give the image unchanged."""
    if record.get("lines"):  # text read (PP-OCR): each line's four-corner box
        out = image_bgr.copy()
        for line in record["lines"]:
            cv2.polylines(out, [np.asarray(line["box"], np.int32).reshape(-1, 1, 2)], True, (0, 200, 0), 2)
        return out
    detections = record.get("detections") or []
    dets = np.array([[*d["box"], d["score"], d["class_id"]] for d in detections], np.float32).reshape(-1, 6)
    names = {d["class_id"]: d.get("class_name", str(d["class_id"])) for d in detections}
    return draw_detections(image_bgr, dets, names)
