"""INT8 calibration for explicit quantization: activation histograms, thresholds, Q/DQ arithmetic, the cache file.

TensorRT 11 removed its calibrators (`IInt8EntropyCalibrator2` and friends, see docs/tensorrt.md §2a), so the
zoo computes the scales itself and writes them into the network as Q/DQ layers. This module is executor-agnostic:
whoever runs the network hands it activation tensors by tensor name.

Workflow::

    collector = HistogramCollector()                 # phase 1: ranges
    for batch in images: run(batch, hook=collector.observe)
    collector.collect_histograms()                   # phase 2: histograms over the now fixed ranges
    for batch in images: run(batch, hook=collector.observe)
    scales = compute_scales(collector, "entropy")    # {tensor name: scale}, scale = threshold / 127
    CalibrationCache("yolov5n", "n", "entropy", len(images), (1, 3, 640, 640), scales).save(path)

Design choices (the why is next to each piece of code):

* **Two passes over the calibration data, not a re-binned single pass.** TensorRT's entropy calibrator searches
  2048 bins over [0, amax] where amax is the maximum over *all* calibration data. A single pass cannot know that
  range in advance; growing the range by doubling and merging bin pairs keeps counts exact only while the range
  is a power-of-two multiple of the first batch's amax, so the final histogram spans [0, R] with amax <= R < 2 amax
  (as few as 1024 bins in use) and is not the histogram TensorRT would search. Two passes give exactly that
  histogram: every value's bin depends only on the value and the final amax, so the sum of per-batch histograms
  equals one histogram over the concatenated data, bit for bit. The price is running the calibration set twice,
  which the cache file makes a one-time cost. `method="max"` needs only the first pass.
* **Histogram binning** is `torch.histc` over |x| in FP32 on the tensor's own device, in chunks of at most 2**24
  elements so that histc's FP32 counts stay exact; counts are accumulated as int64. A value equal to amax falls in
  the last bin (histc's rule). Values above the frozen amax in the second pass (the two passes saw different data,
  or a non-deterministic executor) are counted into the last bin and in `out_of_range`.
* **Entropy search** follows TensorRT's published pseudocode (GTC 2017 S7310, "8-bit Inference with TensorRT"):
  see `entropy_divergences`. Candidates run from `start_bin` to the histogram length *inclusive*: the last one,
  i = 2048, is "clip nothing", the only candidate whose divergence is always finite, and the right answer for a
  uniform distribution. No smoothing: a candidate whose last kept bin holds only clipped outliers while every
  source bin of its group is empty has P > 0 where Q = 0, so KL = +inf and it cannot win (NVIDIA's
  pytorch-quantization behaves the same; MXNet's port smooths with an epsilon instead). The consequence: when a few
  outliers lie more than ~16x beyond the bulk (the bulk fills fewer than `start_bin` bins), the only finite
  candidates end at an outlier and the threshold lands there. `method="percentile"` suits such tensors.
* **Threshold convention** for the chosen candidate i: `(i + 0.5) * bin_width`, as in that pseudocode
  ("threshold = (m + 0.5) * (width of a bin)"; TPU-MLIR's description of the algorithm says the same), so that
  the zoo's scales follow what was published for TensorRT's calibrator; capped at amax (`num_bins * bin_width`),
  because for i = 2048 it would lie half a bin above every observed value and only waste resolution.
  pytorch-quantization uses the bin edge `i * bin_width` instead; the difference is half a bin (amax / 4096).
* **Zero tensors.** A tensor whose calibration values are all zero has amax 0 and no meaningful range; every method
  then uses the threshold `ZERO_AMAX_THRESHOLD` (1e-8, the floor that docs/tensorrt.md §5 puts under
  per-channel weight amax), so the scale stays positive as Q/DQ requires and the tensor quantizes to zeros.
* **Scales are rounded to FP32** (`compute_scales`): the network stores them as FP32 constants, so the cache holds
  exactly the value that TensorRT and the reference backend use.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path

import numpy as np
import torch

from .files import write_text_atomic

__all__ = [
    "CalibrationError", "HistogramCollector", "entropy_divergences", "entropy_bin", "entropy_threshold",
    "percentile_threshold", "max_threshold", "compute_scales", "quantize", "dequantize", "fake_quantize",
    "CalibrationCache", "QMIN", "QMAX", "ZERO_AMAX_THRESHOLD",
]

QMIN, QMAX = -128, 127                 # TensorRT's INT8 range: Q = clamp(round(x / scale), -128, 127)
ZERO_AMAX_THRESHOLD = 1e-8             # threshold for a tensor that was all zeros during calibration
METHODS = ("entropy", "percentile", "max")
_HISTC_CHUNK = 1 << 24                 # histc counts in FP32: exact up to 2**24 per bin and call


class CalibrationError(ValueError):
    """Calibration data or a calibration cache that cannot be used; the message names the tensor or file."""


# --------------------------------------------------------------------------------------------------------------
# Histograms
# --------------------------------------------------------------------------------------------------------------

def _float32(values) -> torch.Tensor:
    """values flattened as FP32 (torch tensors stay on their device)."""
    x = values.detach() if isinstance(values, torch.Tensor) else torch.from_numpy(np.ascontiguousarray(values))
    return x.reshape(-1).to(torch.float32)


class HistogramCollector:
    """Per tensor name: the absolute maximum (phase "ranges"), then a `num_bins` histogram of |x| over [0, amax]
    (phase "histograms"). Feed the same calibration data through `observe` in both phases."""

    def __init__(self, num_bins: int = 2048):
        if num_bins < 1:
            raise ValueError(f"num_bins must be positive, got {num_bins}")
        self.num_bins = num_bins
        self.collect_ranges()

    @property
    def phase(self) -> str:
        return self._phase

    @property
    def names(self) -> list[str]:
        """Tensor names in the order they were first observed."""
        return list(self._amax)

    def collect_ranges(self) -> None:
        """Start (again) from nothing: the following `observe` calls record each tensor's absolute maximum."""
        self._phase = "ranges"
        self._amax: dict[str, float] = {}
        self._hist: dict[str, np.ndarray] = {}
        self.out_of_range: dict[str, int] = {}

    def collect_histograms(self) -> None:
        """Freeze the ranges; the following `observe` calls fill histograms over [0, amax] (from zero counts)."""
        if not self._amax:
            raise CalibrationError("no tensor was observed while collecting ranges: run the calibration data "
                                   "through observe() before collect_histograms()")
        self._phase = "histograms"
        self._hist = {name: np.zeros(self.num_bins, dtype=np.int64) for name in self._amax}
        self.out_of_range = {name: 0 for name in self._amax}

    def observe(self, name: str, values) -> None:
        """Record one activation tensor (torch tensor or numpy array, any shape and float dtype) of tensor `name`."""
        x = _float32(values)
        if self._phase == "ranges":
            if x.numel():
                lowest, highest = torch.aminmax(x)                 # no |x| copy; NaN propagates
                m = max(-float(lowest), float(highest))
            else:
                m = 0.0
            if not math.isfinite(m):
                raise CalibrationError(f"tensor {name!r} holds NaN or Inf values in the calibration data; "
                                       f"it cannot be calibrated")
            self._amax[name] = max(self._amax.get(name, 0.0), m)
            return
        amax = self._amax.get(name)
        if amax is None:
            raise CalibrationError(f"tensor {name!r} was not observed while collecting ranges: feed the same "
                                   f"tensors in both phases")
        counts = self._hist[name]
        if x.numel() == 0:
            return
        if amax == 0.0:                          # degenerate range: everything in bin 0 (histc(0, 0) auto-ranges)
            counts[0] += x.numel()
            self.out_of_range[name] += int(torch.count_nonzero(x))
            return
        x = x.abs()
        binned = np.zeros_like(counts)
        for chunk in x.split(_HISTC_CHUNK):
            binned += torch.histc(chunk, bins=self.num_bins, min=0.0, max=amax).to(torch.int64).cpu().numpy()
        over = x.numel() - int(binned.sum())     # histc drops values above amax (and NaN): into the last bin
        binned[-1] += over
        counts += binned
        self.out_of_range[name] += over

    def amax(self, name: str) -> float:
        return self._amax[name]

    def histogram(self, name: str) -> tuple[np.ndarray, float]:
        """(counts as int64, bin width) of tensor `name`; bin k holds |x| in [k * width, (k + 1) * width), the last
        bin also amax (edges as histc rounds them in FP32)."""
        if self._phase != "histograms":
            raise CalibrationError("histograms are collected in the second phase: call collect_histograms() and "
                                   "run the calibration data through observe() again")
        return self._hist[name].copy(), self._amax[name] / self.num_bins


# --------------------------------------------------------------------------------------------------------------
# Thresholds
# --------------------------------------------------------------------------------------------------------------

def _counts(hist) -> np.ndarray:
    h = np.asarray(hist, dtype=np.float64)
    if h.ndim != 1 or h.size == 0:
        raise ValueError(f"a histogram must be a non-empty 1-D array, got shape {h.shape}")
    if not np.all(np.isfinite(h)) or np.any(h < 0):
        raise ValueError("histogram counts must be finite and non-negative")
    if h.sum() <= 0:
        raise ValueError("the histogram is empty (all counts are zero)")
    return h


def _bin_width(n: int, bin_width) -> float:
    """A bin width, or uniform bin edges starting at 0 (n + 1 of them, as np.histogram returns)."""
    if np.ndim(bin_width) == 0:
        w = float(bin_width)
    else:
        edges = np.asarray(bin_width, dtype=np.float64)
        if edges.shape != (n + 1,) or edges[0] != 0:
            raise ValueError(f"bin edges must be {n + 1} values starting at 0, got shape {edges.shape}")
        w = float(edges[-1]) / n
    if not (math.isfinite(w) and w >= 0):
        raise ValueError(f"bin width must be finite and non-negative, got {w}")
    return w


def entropy_divergences(hist, num_quant_bins: int = 128, start_bin: int = 128) -> np.ndarray:
    """KL(P || Q) for every candidate i = start_bin .. len(hist) (inclusive), TensorRT's entropy calibration.

    For candidate i (keep bins 0 .. i-1):
    * P = hist[:i] with the outliers, sum(hist[i:]), added to P[i-1];
    * Q = hist[:i] merged into `num_quant_bins` groups, bin k in group (k * num_quant_bins) // i (an even split,
      group sizes differ by at most one), each group's count spread evenly over the bins of the group where P is
      non-zero; bins where P is zero stay zero in Q;
    * both normalised to sum 1; KL = sum over P > 0 of p log(p / q). It is +inf where P > 0 and Q = 0 (bin i-1
      holds only outliers and its whole group is empty): such a candidate cannot be chosen.

    Vectorised over blocks of candidates (no Python loop over bins), in float64; each term is computed directly,
    not from prefix sums (which would cancel catastrophically), so values agree with a straightforward loop to
    rounding and exact ties stay exact.
    """
    h = _counts(hist)
    n = h.size
    if not 1 <= num_quant_bins <= start_bin <= n:
        raise ValueError(f"need 1 <= num_quant_bins ({num_quant_bins}) <= start_bin ({start_bin}) <= number of "
                         f"bins ({n})")
    total = h.sum()
    tail = np.append(np.cumsum(h[::-1])[::-1], 0.0)        # tail[i] = sum(h[i:]): exact for integer counts
    candidates = np.arange(start_bin, n + 1)
    out = np.empty(candidates.size)
    block = max(1, (1 << 18) // n)                          # ~256K elements per temporary
    with np.errstate(divide="ignore", invalid="ignore"):
        for lo in range(0, candidates.size, block):
            i = candidates[lo:lo + block]
            rows = np.arange(i.size)
            k = np.arange(i[-1])                            # columns: the bins the block's largest candidate keeps
            kept = k < i[:, None]                           # (rows, columns): bins 0 .. i-1
            raw = np.where(kept, h[:i[-1]], 0.0)            # hist[:i], zero beyond
            p = raw.copy()
            p[rows, i - 1] += tail[i]
            support = p > 0
            group = np.minimum((k * num_quant_bins) // i[:, None], num_quant_bins - 1)
            flat = (rows[:, None] * num_quant_bins + group).ravel()
            size = i.size * num_quant_bins
            group_count = np.bincount(flat, weights=raw.ravel(), minlength=size)
            group_support = np.bincount(flat, weights=support.ravel(), minlength=size)
            q = np.where(support, (group_count / group_support)[flat].reshape(p.shape), 0.0)
            p /= total                                      # sum(P) = total
            kept_total = total - tail[i]                    # sum(Q) = sum(hist[:i]): every count lands in Q
            q /= np.where(kept_total > 0, kept_total, 1.0)[:, None]     # (Q is all zero where it is 0)
            terms = np.where(support, p * np.log(p / q), 0.0)   # q == 0 < p gives +inf
            out[lo:lo + i.size] = terms.sum(axis=1)
    return out


def entropy_bin(hist, num_quant_bins: int = 128, start_bin: int = 128) -> int:
    """The candidate i (number of bins kept) with the smallest divergence; the smallest i among exact ties."""
    return start_bin + int(np.argmin(entropy_divergences(hist, num_quant_bins, start_bin)))


def entropy_threshold(hist, bin_width, num_quant_bins: int = 128, start_bin: int = 128) -> float:
    """TensorRT's entropy (KL) threshold of a histogram of |x|: (i + 0.5) * bin_width for the chosen candidate i,
    at most the histogram's range. `bin_width` may also be the n + 1 bin edges starting at 0."""
    h = _counts(hist)
    w = _bin_width(h.size, bin_width)
    return min((entropy_bin(h, num_quant_bins, start_bin) + 0.5) * w, h.size * w)


def percentile_threshold(hist, bin_width, percentile: float = 99.99) -> float:
    """The upper edge of the first bin where the cumulative count reaches `percentile` % of all values, so at
    least that share of values is <= the threshold; percentile 100 gives the histogram's range (amax)."""
    if not 0 < percentile <= 100:
        raise ValueError(f"percentile must be in (0, 100], got {percentile}")
    h = _counts(hist)
    w = _bin_width(h.size, bin_width)
    cumulative = np.cumsum(h)
    idx = int(np.searchsorted(cumulative, cumulative[-1] * (percentile / 100.0), side="left"))
    return (min(idx, h.size - 1) + 1) * w


def max_threshold(amax: float) -> float:
    """The absolute maximum itself (ZERO_AMAX_THRESHOLD for an all-zero tensor)."""
    amax = float(amax)
    if not (math.isfinite(amax) and amax >= 0):
        raise ValueError(f"amax must be finite and non-negative, got {amax}")
    return amax if amax > 0 else ZERO_AMAX_THRESHOLD


def compute_scales(collector: HistogramCollector, method: str = "entropy",
                   percentile: float = 99.99) -> dict[str, float]:
    """Symmetric INT8 scale = threshold / 127 for every observed tensor, rounded to FP32, in observation order."""
    if method not in METHODS:
        raise ValueError(f"unknown calibration method {method!r}; choose one of {', '.join(METHODS)}")
    if method != "max" and collector.phase != "histograms":
        raise CalibrationError(f"method {method!r} needs histograms: call collect_histograms() and run the "
                               f"calibration data through observe() again")
    scales = {}
    for name in collector.names:
        amax = collector.amax(name)
        if method == "max" or amax == 0.0:
            threshold = max_threshold(amax)
        else:
            counts, width = collector.histogram(name)
            if not counts.any():
                raise CalibrationError(f"tensor {name!r} has no values in its histogram: it was not observed "
                                       f"while collecting histograms")
            threshold = (entropy_threshold(counts, width) if method == "entropy"
                         else percentile_threshold(counts, width, percentile))
        scales[name] = float(np.float32(threshold / QMAX))
    return scales


# --------------------------------------------------------------------------------------------------------------
# Q/DQ arithmetic: the single implementation the reference backend executes IQuantizeLayer/IDequantizeLayer with
# --------------------------------------------------------------------------------------------------------------

def _scale_like(scale, x: torch.Tensor, axis: int | None) -> torch.Tensor:
    """`scale` as an FP32 tensor that broadcasts against x: one value, or one per index of dimension `axis`."""
    s = torch.as_tensor(scale, dtype=torch.float32, device=x.device)
    if axis is None:
        if s.numel() != 1:
            raise ValueError(f"a per-tensor scale must be a single value, got shape {tuple(s.shape)} "
                             f"(pass axis= for per-channel scales)")
        s = s.reshape(())
    else:
        if not -x.dim() <= axis < x.dim():
            raise ValueError(f"axis {axis} is out of range for a tensor of shape {tuple(x.shape)}")
        axis %= x.dim()
        if s.dim() != 1 or s.numel() != x.shape[axis]:
            raise ValueError(f"a per-channel scale must be 1-D with {x.shape[axis]} values (dimension {axis} of "
                             f"{tuple(x.shape)}), got shape {tuple(s.shape)}")
        shape = [1] * x.dim()
        shape[axis] = -1
        s = s.reshape(shape)
    if not bool(torch.all(torch.isfinite(s) & (s > 0))):
        raise ValueError("quantization scales must be positive and finite")
    return s


def _quantize(x: torch.Tensor, s: torch.Tensor) -> torch.Tensor:
    # FP32 division, then round half to even (torch.round), then saturate: TensorRT's IQuantizeLayer
    return torch.round(x.to(torch.float32) / s).clamp_(QMIN, QMAX).to(torch.int8)


def quantize(x: torch.Tensor, scale, axis: int | None = None) -> torch.Tensor:
    """INT8 q = clamp(round_half_to_even(x / scale), -128, 127), computed in FP32. `scale`: one value
    (per-tensor, axis=None) or a 1-D array with one value per index of dimension `axis` (per-channel)."""
    return _quantize(x, _scale_like(scale, x, axis))


def dequantize(q: torch.Tensor, scale, axis: int | None = None, dtype: torch.dtype = torch.float32) -> torch.Tensor:
    """q * scale computed in FP32, returned as `dtype` (IDequantizeLayer's output type)."""
    return (q.to(torch.float32) * _scale_like(scale, q, axis)).to(dtype)


def fake_quantize(x: torch.Tensor, scale, axis: int | None = None) -> torch.Tensor:
    """dequantize(quantize(x)) in x's floating dtype (FP32 for other inputs)."""
    s = _scale_like(scale, x, axis)
    dtype = x.dtype if x.is_floating_point() else torch.float32
    return (_quantize(x, s).to(torch.float32) * s).to(dtype)


# --------------------------------------------------------------------------------------------------------------
# Cache file
# --------------------------------------------------------------------------------------------------------------

_MAGIC = "# trt-zoo calibration cache v1"
_HEADER = ("model", "variant", "method", "num_images", "input_shape", "created", "zoo_version")


def _zoo_version() -> str:
    try:
        from importlib.metadata import PackageNotFoundError, version
        try:
            return version("trt-zoo")
        except PackageNotFoundError:
            return "unknown"
    except ImportError:  # pragma: no cover
        return "unknown"


def _now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


@dataclass
class CalibrationCache:
    """Scales of one calibration pass, so that the pass runs once. Text file::

        # trt-zoo calibration cache v1
        # model: yolov5n
        # ...
        model.0.conv: 0.0123456
    Scales are written with repr(), which reads back to the identical float.
    """
    model: str
    variant: str
    method: str
    num_images: int
    input_shape: tuple[int, ...]
    scales: dict[str, float]
    created: str = field(default_factory=_now)
    zoo_version: str = field(default_factory=_zoo_version)

    def __post_init__(self):
        self.num_images = int(self.num_images)
        self.input_shape = tuple(int(d) for d in self.input_shape)

    def save(self, path) -> None:
        """Write atomically (temporary file in the same folder, then os.replace): never a half-written cache."""
        path = Path(path)
        header = {"model": self.model, "variant": self.variant, "method": self.method,
                  "num_images": str(self.num_images), "input_shape": "x".join(map(str, self.input_shape)),
                  "created": self.created, "zoo_version": self.zoo_version}
        lines = [_MAGIC]
        for key in _HEADER:
            value = str(header[key])
            if "\n" in value or "\r" in value or value != value.strip():
                raise CalibrationError(f"calibration cache {path}: header {key} {value!r} cannot be written on "
                                       f"one line")
            lines.append(f"# {key}: {value}")
        if not self.scales:
            raise CalibrationError(f"calibration cache {path}: there are no tensor scales to write")
        for name, scale in self.scales.items():
            if not name or name != name.strip() or name.startswith("#") or "\n" in name or "\r" in name:
                raise CalibrationError(f"calibration cache {path}: tensor name {name!r} cannot be written (empty, "
                                       f"surrounding spaces, a leading '#' or a line break)")
            _check_scale(float(scale), name, f"calibration cache {path}")
            lines.append(f"{name}: {float(scale)!r}")
        write_text_atomic(path, "\n".join(lines) + "\n")

    @classmethod
    def load(cls, path, expect_model: str | None = None) -> "CalibrationCache":
        """Read a cache written by `save`; with `expect_model`, refuse a cache made for another model."""
        path = Path(path)
        where = f"calibration cache {path}"
        try:
            text = path.read_text(encoding="utf-8")
        except FileNotFoundError:
            raise CalibrationError(f"{where} does not exist") from None
        except UnicodeDecodeError:
            raise CalibrationError(f"{where} is not a text file (a TensorRT binary calibration table?)") from None
        except OSError as e:
            raise CalibrationError(f"{where} cannot be read: {e.strerror or e}") from None
        lines = text.splitlines()
        if not lines or lines[0].strip() != _MAGIC:
            raise CalibrationError(f"{where} is not a trt-zoo calibration cache (line 1 should be {_MAGIC!r})")
        header: dict[str, str] = {}
        scales: dict[str, float] = {}
        for number, line in enumerate(lines[1:], start=2):
            if not line.strip():
                continue
            if line.startswith("#"):
                key, sep, value = line[1:].partition(":")
                if sep and key.strip() in _HEADER:
                    header[key.strip()] = value.strip()
                continue                                    # other comments are allowed and ignored
            name, sep, value = line.rpartition(":")
            name = name.strip()
            if not sep or not name:
                raise CalibrationError(f"{where}, line {number}: expected 'tensor_name: scale', got {line!r}")
            try:
                scale = float(value)
            except ValueError:
                raise CalibrationError(f"{where}, line {number}: scale {value.strip()!r} of tensor {name!r} is not "
                                       f"a number") from None
            if name in scales:
                raise CalibrationError(f"{where}, line {number}: tensor {name!r} appears twice")
            _check_scale(scale, name, f"{where}, line {number}")
            scales[name] = scale
        missing = [key for key in _HEADER if key not in header]
        if missing:
            raise CalibrationError(f"{where} lacks the header line(s) {', '.join(f'# {k}: ...' for k in missing)}")
        if not scales:
            raise CalibrationError(f"{where} holds no tensor scales")
        if expect_model is not None and header["model"] != expect_model:
            raise CalibrationError(f"{where} was made for model {header['model']!r}, not {expect_model!r}")
        try:
            num_images = int(header["num_images"])
        except ValueError:
            raise CalibrationError(f"{where}: num_images {header['num_images']!r} is not an integer") from None
        try:
            shape = tuple(int(d) for d in header["input_shape"].split("x")) if header["input_shape"] else ()
        except ValueError:
            raise CalibrationError(f"{where}: input_shape {header['input_shape']!r} is not like 1x3x640x640") from None
        return cls(model=header["model"], variant=header["variant"], method=header["method"], num_images=num_images,
                   input_shape=shape, scales=scales, created=header["created"], zoo_version=header["zoo_version"])


def _check_scale(scale: float, name: str, where: str) -> None:
    if not (math.isfinite(scale) and scale > 0):
        raise CalibrationError(f"{where}: tensor {name!r} has scale {scale!r}; scales must be positive and finite")
