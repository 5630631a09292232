"""Annotated images of what PP-OCR read: the photo with its text boxes on the left, the text read drawn at the same
places on a white panel on the right (a CJK font: synth.cjk_font_path, Debian's fonts-wqy-microhei)."""
from __future__ import annotations

import numpy as np

from .pipeline import TextLine
from .synth import cjk_font_path


def annotate(image_bgr: np.ndarray, lines: list[TextLine]) -> np.ndarray:
    import cv2
    from PIL import Image, ImageDraw, ImageFont
    h, w = image_bgr.shape[:2]
    left = image_bgr.copy()
    panel = Image.new("RGB", (w, h), (255, 255, 255))
    draw = ImageDraw.Draw(panel)
    for i, line in enumerate(lines):
        color = tuple(int(c) for c in np.random.default_rng(i).integers(40, 200, 3))
        points = line.box.astype(np.int32).reshape(-1, 1, 2)
        cv2.polylines(left, [points], True, color[::-1], 2)
        draw.polygon([tuple(p) for p in line.box.tolist()], outline=color)
        box_h = max(8, int(np.linalg.norm(line.box[0] - line.box[3])))
        font = ImageFont.truetype(cjk_font_path(), max(8, int(box_h * 0.8)))
        draw.text((float(line.box[0][0]) + 2, float(line.box[0][1]) + 1), line.text, fill=(0, 0, 0), font=font)
    right = cv2.cvtColor(np.asarray(panel), cv2.COLOR_RGB2BGR)
    return np.concatenate([left, right], axis=1)
