"""Depth maps as files: log-depth in a 16-bit PNG, and a colour map to look at.

The PNG holds v = round((ln(depth in metres) - LOG_DEPTH_OFFSET) * LOG_DEPTH_SCALE), clipped to 0..65535, so
ln(depth) = v / 4096 - 8 and depth = exp(v / 4096 - 8) metres: 0.34 mm to 2981 m in steps of 1/4096 in ln(depth)
(0.024 % of the depth). YOLO26's Depth head clamps its log-depth to [-4, 5] before its calibration, well inside.
"""
from __future__ import annotations

import cv2
import numpy as np

LOG_DEPTH_SCALE = 4096.0
LOG_DEPTH_OFFSET = -8.0
UINT16_MAX = 65535


def encode_log_depth(depth_m: np.ndarray) -> np.ndarray:
    """Depth in metres (H, W) -> the uint16 values of the PNG (non-positive depths -> 0)."""
    d = np.asarray(depth_m, np.float64)
    with np.errstate(divide="ignore", invalid="ignore"):
        log = np.where(d > 0, np.log(np.maximum(d, 1e-300)), LOG_DEPTH_OFFSET)
    return np.clip(np.rint((log - LOG_DEPTH_OFFSET) * LOG_DEPTH_SCALE), 0, UINT16_MAX).astype(np.uint16)


def decode_log_depth(values: np.ndarray) -> np.ndarray:
    """The PNG's uint16 values -> ln(depth in metres), float32."""
    return (np.asarray(values, np.float32) / np.float32(LOG_DEPTH_SCALE) + np.float32(LOG_DEPTH_OFFSET))


def colorize_log_depth(log_depth: np.ndarray) -> np.ndarray:
    """A BGR uint8 colour map of ln(depth) (H, W): near bright (inferno's yellow), far dark, spread between the
    2nd and 98th percentiles so that a few outliers do not flatten the rest."""
    log = np.asarray(log_depth, np.float32)
    lo, hi = np.percentile(log, (2, 98)) if log.size else (0.0, 1.0)
    nearness = np.clip((hi - log) / max(float(hi - lo), 1e-6), 0, 1)
    return cv2.applyColorMap(np.rint(nearness * 255).astype(np.uint8), cv2.COLORMAP_INFERNO)


def png_bytes(values: np.ndarray) -> bytes:
    """A PNG of a (H, W) uint8 or uint16 array (16-bit PNG for uint16)."""
    ok, encoded = cv2.imencode(".png", values)
    if not ok:
        raise RuntimeError("cannot encode the PNG")
    return encoded.tobytes()
