"""INT8 calibration: entropy/percentile/max thresholds, histogram collection, Q/DQ arithmetic, the cache file."""
import math
import os

import numpy as np
import pytest
import torch

from zoo.engine.calibration import (
    QMAX, ZERO_AMAX_THRESHOLD, CalibrationCache, CalibrationError, HistogramCollector, compute_scales, dequantize,
    entropy_bin, entropy_divergences, entropy_threshold, fake_quantize, max_threshold, percentile_threshold,
    quantize,
)


# ----------------------------------------------------------------------------------------------------------------
# An independent entropy search: plain Python, one candidate and one group at a time, group bounds from ceilings
# (the module computes group membership as (k * 128) // i over whole blocks of candidates at once).
# ----------------------------------------------------------------------------------------------------------------

def reference_divergences(hist, num_quant_bins=128, start_bin=128):
    h = [int(v) for v in hist]
    n = len(h)
    out = []
    for i in range(start_bin, n + 1):
        p = h[:i]
        p[i - 1] += sum(h[i:])                                     # outliers go into the last kept bin
        q = [0.0] * i
        for j in range(num_quant_bins):
            lo, hi = -(-j * i // num_quant_bins), -(-(j + 1) * i // num_quant_bins)   # ceil(j * i / 128) ...
            mass = sum(h[lo:hi])                                   # merge the source bins, without outliers
            nonzero = [b for b in range(lo, hi) if p[b] > 0]
            for b in nonzero:                                      # expand over the bins where P is non-zero
                q[b] = mass / len(nonzero)
        p_sum, q_sum = sum(p), sum(q)
        kl = 0.0
        for b in range(i):
            if p[b] == 0:
                continue
            if q[b] == 0:
                kl = math.inf
                break
            pb, qb = p[b] / p_sum, q[b] / q_sum
            kl += pb * math.log(pb / qb)
        out.append(kl)
    return out


def reference_bin(hist, num_quant_bins=128, start_bin=128):
    divergences = reference_divergences(hist, num_quant_bins, start_bin)
    best = min(range(len(divergences)), key=lambda c: (divergences[c], c))   # first of the smallest
    return start_bin + best


def assert_same_divergences(hist, *args):
    ours, theirs = entropy_divergences(hist, *args), np.array(reference_divergences(hist, *args))
    finite = np.isfinite(theirs)
    assert np.array_equal(np.isfinite(ours), finite)
    np.testing.assert_allclose(ours[finite], theirs[finite], rtol=1e-9, atol=1e-15)
    return ours


def abs_histogram(x, bins):
    a = np.abs(np.asarray(x, dtype=np.float64))
    hist, edges = np.histogram(a, bins=bins, range=(0.0, a.max()))
    return hist, edges[1] - edges[0], a.max()


def distributions():
    rng = np.random.default_rng(1234)
    gauss = rng.standard_normal(200_000)
    gauss[:4] = [30.0, -27.0, 24.0, 35.0]                          # a few far outliers (the bulk ends near 4.5)
    laplace = rng.laplace(0.0, 1.0, 200_000)
    laplace[:3] = [90.0, -80.0, 85.0]                              # (the bulk ends near 12)
    student = rng.standard_t(3, 200_000)                          # heavy-tailed, its own far outliers
    cauchy = np.clip(rng.standard_cauchy(200_000), -50, 50)        # clipped: a spike of values at amax
    return {"gaussian+outliers": gauss, "laplacian+outliers": laplace, "student-t(3)": student,
            "cauchy-clipped": cauchy}


@pytest.mark.parametrize("name", list(distributions()))
def test_entropy_search_matches_independent_implementation(name):
    x = distributions()[name]
    hist, _, _ = abs_histogram(x, bins=1024)                       # 1024 bins keep the plain-Python search quick
    assert_same_divergences(hist)
    assert entropy_bin(hist) == reference_bin(hist)


def test_entropy_search_matches_independent_implementation_2048_bins():
    x = distributions()["gaussian+outliers"]
    hist, _, _ = abs_histogram(x, bins=2048)
    assert entropy_bin(hist) == reference_bin(hist)


def test_entropy_search_other_quantized_bin_counts():
    x = distributions()["laplacian+outliers"]
    hist, _, _ = abs_histogram(x, bins=600)                        # candidate counts not divisible by the groups
    for num_quant_bins, start_bin in [(64, 64), (100, 150), (128, 128)]:
        assert_same_divergences(hist, num_quant_bins, start_bin)
        assert entropy_bin(hist, num_quant_bins, start_bin) == reference_bin(hist, num_quant_bins, start_bin)


def test_entropy_threshold_gaussian_with_outliers_clips_them():
    x = distributions()["gaussian+outliers"]                        # sigma 1, amax 35
    hist, width, amax = abs_histogram(x, bins=2048)
    threshold = entropy_threshold(hist, width)
    assert 2.0 < threshold < 0.2 * amax
    assert threshold == (entropy_bin(hist) + 0.5) * width
    assert entropy_threshold(hist, np.arange(2049) * width) == pytest.approx(threshold, rel=1e-12)   # edges form


def test_entropy_threshold_laplacian_and_heavy_tails_below_amax():
    for name in ("laplacian+outliers", "student-t(3)"):
        hist, width, amax = abs_histogram(distributions()[name], bins=2048)
        threshold = entropy_threshold(hist, width)
        assert 3.0 < threshold < 0.5 * amax, name


def test_entropy_threshold_uniform_is_near_amax():
    x = np.random.default_rng(7).uniform(-3.0, 3.0, 500_000)
    hist, width, amax = abs_histogram(x, bins=2048)
    assert entropy_threshold(hist, width) > 0.97 * amax


def test_entropy_sparse_tail_candidates_are_infinite():
    # Outliers so far out that the bulk fills fewer than 128 bins: a candidate whose last kept bin holds only the
    # clipped outliers (P > 0) while every source bin of its group is empty (Q = 0) has KL = +inf, as in the
    # published pseudocode (no smoothing). Only candidates whose last group reaches a populated bin stay finite.
    rng = np.random.default_rng(9)
    x = np.r_[rng.standard_normal(100_000), 300.0, -250.0, 400.0]
    hist, width, amax = abs_histogram(x, bins=2048)
    ours = assert_same_divergences(hist)
    populated = np.flatnonzero(hist)
    for c, i in enumerate(range(128, 2049)):
        last_group_start = -(-127 * i // 128)
        reaches = bool(np.any((populated >= last_group_start) & (populated < i)))
        assert np.isfinite(ours[c]) == reaches, i
    assert entropy_bin(hist) == reference_bin(hist)
    # the price of the literal rule: the threshold lands among the outliers, far above the bulk (see the module doc)
    assert entropy_threshold(hist, width) > 50


def test_entropy_exact_cases():
    # a flat histogram: keeping every bin makes Q == P exactly (KL 0); threshold capped at the range, not 2048.5
    assert entropy_bin(np.full(2048, 10)) == 2048
    assert entropy_threshold(np.full(2048, 10), 0.5) == 1024.0
    # a constant tensor: every value in the last bin; any clipping candidate has P > 0 where Q is 0
    last = np.zeros(2048)
    last[-1] = 1000
    divergences = entropy_divergences(last)
    assert np.isinf(divergences[:-1]).all() and divergences[-1] == 0.0
    # everything within the first 128 bins and flat: exact ties at KL 0, the smallest candidate wins
    low = np.zeros(2048)
    low[:128] = 5
    assert entropy_divergences(low)[0] == 0.0
    assert entropy_bin(low) == 128 and entropy_threshold(low, 1.0) == 128.5


def test_entropy_bad_histograms():
    with pytest.raises(ValueError, match="empty"):
        entropy_threshold(np.zeros(2048), 1.0)
    with pytest.raises(ValueError, match="start_bin"):
        entropy_threshold(np.ones(100), 1.0)                       # fewer bins than the first candidate
    with pytest.raises(ValueError, match="non-negative"):
        entropy_threshold(np.r_[np.ones(2047), -1.0], 1.0)


@pytest.mark.parametrize("percentile", [50.0, 99.0, 99.9, 99.99])
def test_percentile_threshold_within_one_bin_of_numpy(percentile):
    for name, x in distributions().items():
        hist, width, _ = abs_histogram(x, bins=2048)
        expected = np.percentile(np.abs(x), percentile)
        assert abs(percentile_threshold(hist, width, percentile) - expected) <= width, name


def test_percentile_100_and_max_are_amax():
    x = distributions()["student-t(3)"]
    hist, width, amax = abs_histogram(x, bins=2048)
    assert percentile_threshold(hist, width, 100.0) == pytest.approx(amax, rel=1e-12)
    assert max_threshold(amax) == amax == np.abs(x).max()
    assert max_threshold(0.0) == ZERO_AMAX_THRESHOLD
    with pytest.raises(ValueError):
        percentile_threshold(hist, width, 0.0)
    with pytest.raises(ValueError):
        max_threshold(float("nan"))


# ----------------------------------------------------------------------------------------------------------------
# Histogram collection
# ----------------------------------------------------------------------------------------------------------------

def run_two_phases(collector, batches):
    for batch in batches:
        for name, value in batch.items():
            collector.observe(name, value)
    collector.collect_histograms()
    for batch in batches:
        for name, value in batch.items():
            collector.observe(name, value)


def test_histograms_over_growing_ranges_equal_one_histogram_of_all_data():
    # the method is exact: each value's bin depends only on it and the final amax, so per-batch counts add up to the
    # histogram of the concatenation bit for bit, whatever order the ranges grow in
    rng = np.random.default_rng(3)
    batches = [{"act": torch.from_numpy(rng.standard_normal((2, 8, 16, 16)).astype(np.float32) * s)}
               for s in (0.5, 2.0, 1.0, 7.0, 3.0)]
    collector = HistogramCollector()
    run_two_phases(collector, batches)
    counts, width = collector.histogram("act")
    everything = torch.cat([b["act"].reshape(-1) for b in batches]).abs()
    amax = float(everything.max())
    assert collector.amax("act") == amax and width == amax / 2048
    expected = torch.histc(everything, bins=2048, min=0.0, max=amax).to(torch.int64).numpy()
    assert counts.dtype == np.int64 and np.array_equal(counts, expected)
    assert counts.sum() == everything.numel() and collector.out_of_range["act"] == 0
    # and it is the ordinary histogram: numpy (float64 binning) differs only for values within rounding of an edge
    reference, _ = np.histogram(everything.double().numpy(), bins=2048, range=(0.0, amax))
    position = everything.double().numpy() / width
    near_edge = np.abs(position - np.round(position)) < 1e-4
    assert np.abs(counts - reference).sum() <= 2 * near_edge.sum()


def test_collector_accepts_numpy_half_and_any_shape():
    collector = HistogramCollector()
    a = np.array([[-4.0, 1.0], [2.0, 0.5]], dtype=np.float64)
    b = torch.tensor([3.0, -1.0], dtype=torch.float16)
    run_two_phases(collector, [{"x": a}, {"x": b}])
    counts, width = collector.histogram("x")
    assert collector.amax("x") == 4.0 and width == 4.0 / 2048
    assert counts.sum() == 6 and counts[-1] == 1 and counts[1536] == 1   # |-4| in the last bin, 3.0 at 3/4


def test_collector_all_zero_tensor_and_fallback_scale():
    collector = HistogramCollector()
    run_two_phases(collector, [{"dead": torch.zeros(3, 4), "live": torch.arange(-5.0, 6.0)}])
    counts, width = collector.histogram("dead")
    assert counts[0] == 12 and counts.sum() == 12 and width == 0.0
    for method in ("entropy", "percentile", "max"):
        scales = compute_scales(collector, method)
        assert scales["dead"] == np.float32(ZERO_AMAX_THRESHOLD / QMAX) > 0
        assert list(scales) == ["dead", "live"]


def test_collector_values_beyond_the_frozen_range_are_clamped_and_counted():
    collector = HistogramCollector()
    collector.observe("x", np.array([1.0, 2.0]))
    collector.collect_histograms()
    collector.observe("x", np.array([1.0, 2.0, 5.0]))
    counts, _ = collector.histogram("x")
    assert counts[-1] == 2 and counts.sum() == 3 and collector.out_of_range["x"] == 1


def test_collector_errors_name_the_tensor():
    collector = HistogramCollector()
    with pytest.raises(CalibrationError, match="'bad'.*NaN or Inf"):
        collector.observe("bad", np.array([1.0, np.nan]))
    with pytest.raises(CalibrationError, match="no tensor was observed"):
        collector.collect_histograms()
    collector.observe("a", np.ones(4))
    with pytest.raises(CalibrationError, match="needs histograms"):
        compute_scales(collector, "entropy")
    assert compute_scales(collector, "max") == {"a": float(np.float32(1.0 / 127))}
    collector.collect_histograms()
    with pytest.raises(CalibrationError, match="'b' was not observed while collecting ranges"):
        collector.observe("b", np.ones(4))
    with pytest.raises(CalibrationError, match="'a' has no values"):
        compute_scales(collector, "entropy")
    with pytest.raises(ValueError, match="unknown calibration method"):
        compute_scales(collector, "mse")


def test_compute_scales_methods():
    rng = np.random.default_rng(11)
    acts = {"gauss": rng.standard_normal(100_000).astype(np.float32),
            "uniform": rng.uniform(-2, 2, 100_000).astype(np.float32)}
    acts["gauss"][0] = 50.0
    collector = HistogramCollector()
    run_two_phases(collector, [acts])
    for name in acts:
        counts, width = collector.histogram(name)
        amax = collector.amax(name)
        expected = {"entropy": entropy_threshold(counts, width),
                    "percentile": percentile_threshold(counts, width, 99.9), "max": amax}
        for method, threshold in expected.items():
            scale = compute_scales(collector, method, percentile=99.9)[name]
            assert scale == float(np.float32(threshold / 127))      # FP32, as the network stores it
    assert compute_scales(collector, "entropy")["gauss"] * 127 < 10.0   # the outlier at 50 is clipped


# ----------------------------------------------------------------------------------------------------------------
# Q/DQ arithmetic against PyTorch's fake quantization (zero point 0, range -128..127)
# ----------------------------------------------------------------------------------------------------------------

def torch_fake_per_tensor(x, scale):
    return torch.fake_quantize_per_tensor_affine(x, scale, 0, -128, 127)


def test_fake_quantize_per_tensor_matches_torch_exactly():
    scale = 0.25                                   # a power of two: x / scale and torch's x * (1 / scale) agree
    halfway = torch.tensor([2.5, -3.5, 0.5, -0.5, 1.5, -2.5, 126.5, -127.5, 3.4999998]) * scale
    saturate = torch.tensor([127.5, 128.0, 1e6, -128.5, -129.0, -1e6, 0.0, -0.0]) * scale
    random = torch.randn(10_000, generator=torch.Generator().manual_seed(0)) * 20
    for x in (halfway, saturate, random):
        ours = fake_quantize(x, scale)
        assert ours.dtype == torch.float32
        assert torch.equal(ours, torch_fake_per_tensor(x, scale))
    q = quantize(halfway, scale)
    assert q.dtype == torch.int8
    assert q.tolist() == [2, -4, 0, 0, 2, -2, 126, -128, 3]      # half to even
    assert quantize(saturate, scale).tolist() == [127, 127, 127, -128, -128, -128, 0, 0]
    assert torch.equal(dequantize(q, scale), q.float() * scale)


def test_fake_quantize_per_tensor_any_scale_differs_from_torch_only_by_its_reciprocal():
    # TensorRT divides by the scale; torch multiplies by 1/scale. Where the two quotients round differently the
    # results may differ by one level; everywhere else they are identical.
    x = torch.randn(200_000, generator=torch.Generator().manual_seed(1)) * 3
    scale = 0.0371
    ours, theirs = fake_quantize(x, scale), torch_fake_per_tensor(x, scale)
    differ = ours != theirs
    rounding = torch.round(x / torch.tensor(scale)) != torch.round(x * (1 / torch.tensor(scale)))
    assert torch.equal(differ, rounding)
    assert torch.all((ours - theirs).abs()[differ] <= scale * 1.0001)


@pytest.mark.parametrize("axis", [0, 1, -1])
def test_fake_quantize_per_channel_matches_torch_exactly(axis):
    gen = torch.Generator().manual_seed(2)
    x = torch.randn(4, 6, 5, generator=gen) * 40
    channels = x.shape[axis]
    scale = torch.tensor([2.0 ** -e for e in range(channels)])    # powers of two, some of them saturate
    x.select(axis, 0).copy_(torch.tensor(2.5) * scale[0])          # a half-way value in channel 0
    theirs = torch.fake_quantize_per_channel_affine(x, scale, torch.zeros(channels, dtype=torch.int32),
                                                    axis % x.dim(), -128, 127)
    assert torch.equal(fake_quantize(x, scale, axis=axis), theirs)
    assert torch.equal(fake_quantize(x, scale.numpy(), axis=axis), theirs)       # numpy scales too
    assert torch.equal(dequantize(quantize(x, scale, axis=axis), scale, axis=axis), theirs)


def test_quantize_accepts_one_element_scale_and_half_inputs():
    x = torch.tensor([0.3, -1.7, 9.0], dtype=torch.float16)
    ours = fake_quantize(x, torch.tensor([0.5]))                   # the network's scale constant: shape (1,)
    assert ours.dtype == torch.float16
    assert ours.tolist() == [0.5, -1.5, 9.0]
    assert dequantize(quantize(x, 0.5), 0.5, dtype=torch.float16).dtype == torch.float16


def test_quantize_scale_errors():
    x = torch.ones(2, 3)
    with pytest.raises(ValueError, match="positive and finite"):
        quantize(x, 0.0)
    with pytest.raises(ValueError, match="positive and finite"):
        quantize(x, torch.tensor([1.0, -1.0, 1.0]), axis=1)
    with pytest.raises(ValueError, match="per-tensor scale must be a single value"):
        quantize(x, torch.ones(3))
    with pytest.raises(ValueError, match="3 values"):
        quantize(x, torch.ones(2), axis=1)
    with pytest.raises(ValueError, match="out of range"):
        quantize(x, torch.ones(3), axis=2)


# ----------------------------------------------------------------------------------------------------------------
# Cache file
# ----------------------------------------------------------------------------------------------------------------

def make_cache(**changes):
    scales = {"model.0.conv": float(np.float32(1 / 3)), "model.1.cv1 (odd: name)": 1e-30,
              "model.24": float(np.float32(0.1)), "images": 0.0078125, "tiny": 5e-324, "big": 1.7976931348623157e308}
    fields = dict(model="yolov5n", variant="n", method="entropy", num_images=512, input_shape=(1, 3, 640, 640),
                  scales=scales)
    fields.update(changes)
    return CalibrationCache(**fields)


def test_cache_round_trip_is_bit_exact(tmp_path):
    cache = make_cache()
    path = tmp_path / "yolov5n.calib"
    cache.save(path)
    loaded = CalibrationCache.load(path, expect_model="yolov5n")
    assert loaded == cache
    assert list(loaded.scales) == list(cache.scales)
    for name, scale in cache.scales.items():
        assert loaded.scales[name].hex() == scale.hex()
    text = path.read_text()
    assert text.startswith("# trt-zoo calibration cache v1\n# model: yolov5n\n")
    assert "# input_shape: 1x3x640x640\n" in text and "model.0.conv: 0.3333333432674408\n" in text
    assert loaded.created and loaded.zoo_version
    assert os.listdir(tmp_path) == ["yolov5n.calib"]               # no temporary file left behind


def test_cache_save_refuses_bad_scales_and_keeps_the_old_file(tmp_path):
    path = tmp_path / "c.calib"
    make_cache().save(path)
    before = path.read_bytes()
    for scales, pattern in [({"x": 0.0}, "'x' has scale 0.0"), ({"y": math.nan}, "'y' has scale nan"),
                            ({"#z": 1.0}, "'#z' cannot be written"), ({}, "no tensor scales")]:
        with pytest.raises(CalibrationError, match=pattern):
            make_cache(scales=scales).save(path)
    assert path.read_bytes() == before and os.listdir(tmp_path) == ["c.calib"]


def write(tmp_path, body, name="c.calib"):
    header = ("# trt-zoo calibration cache v1\n# model: resnet18\n# variant: 18\n# method: entropy\n"
              "# num_images: 8\n# input_shape: 1x3x224x224\n# created: 2024-01-01T00:00:00+00:00\n"
              "# zoo_version: 0.1.0\n")
    path = tmp_path / name
    path.write_text(header + body)
    return path


def test_cache_load_errors(tmp_path):
    with pytest.raises(CalibrationError, match=r"calibration cache .*missing\.calib does not exist"):
        CalibrationCache.load(tmp_path / "missing.calib")

    good = write(tmp_path, "conv1: 0.5\nlayer1.0.conv1: 0.25\n")
    assert CalibrationCache.load(good).scales == {"conv1": 0.5, "layer1.0.conv1": 0.25}
    with pytest.raises(CalibrationError) as err:
        CalibrationCache.load(good, expect_model="yolov5n")
    assert str(err.value) == f"calibration cache {good} was made for model 'resnet18', not 'yolov5n'"

    cases = [
        ("conv1: 0.5\nconv2 0.25\n", r"line 10: expected 'tensor_name: scale', got 'conv2 0.25'"),
        ("conv1: 0.5\nconv2: abc\n", r"line 10: scale 'abc' of tensor 'conv2' is not a number"),
        ("conv1: -0.5\n", r"line 9: tensor 'conv1' has scale -0.5; scales must be positive and finite"),
        ("conv1: 0\n", r"tensor 'conv1' has scale 0.0"),
        ("conv1: inf\n", r"tensor 'conv1' has scale inf"),
        ("conv1: nan\n", r"tensor 'conv1' has scale nan"),
        ("conv1: 0.5\nconv1: 0.5\n", r"line 10: tensor 'conv1' appears twice"),
        ("", r"holds no tensor scales"),
    ]
    for body, pattern in cases:
        path = write(tmp_path, body)
        with pytest.raises(CalibrationError, match=pattern) as err:
            CalibrationCache.load(path)
        assert str(path) in str(err.value)

    not_ours = tmp_path / "trt.cache"
    not_ours.write_text("TRT-8601-EntropyCalibration2\ninput: 3c010a14\n")
    with pytest.raises(CalibrationError, match="is not a trt-zoo calibration cache"):
        CalibrationCache.load(not_ours)
    binary = tmp_path / "engine.calib"
    binary.write_bytes(b"\xff\xfe\x00\x81binary")
    with pytest.raises(CalibrationError, match="is not a text file"):
        CalibrationCache.load(binary)
    no_model = tmp_path / "nomodel.calib"
    no_model.write_text(write(tmp_path, "conv1: 0.5\n").read_text().replace("# model: resnet18\n", ""))
    with pytest.raises(CalibrationError, match="lacks the header line.*# model: "):
        CalibrationCache.load(no_model)
    with pytest.raises(CalibrationError, match="cannot be read"):
        CalibrationCache.load(tmp_path)                           # a folder


def test_calibrate_save_load_quantize_end_to_end(tmp_path):
    rng = np.random.default_rng(5)
    batches = [{"images": rng.uniform(0, 1, (2, 3, 8, 8)).astype(np.float32),
                "model.0.conv": rng.standard_normal((2, 4, 8, 8)).astype(np.float32)} for _ in range(3)]
    collector = HistogramCollector()
    run_two_phases(collector, batches)
    scales = compute_scales(collector, "entropy")
    path = tmp_path / "tiny.calib"
    CalibrationCache("tiny", "", "entropy", 6, (2, 3, 8, 8), scales).save(path)
    loaded = CalibrationCache.load(path, expect_model="tiny")
    assert loaded.scales == scales and loaded.variant == "" and loaded.input_shape == (2, 3, 8, 8)
    x = torch.from_numpy(batches[0]["model.0.conv"])
    error = (fake_quantize(x, loaded.scales["model.0.conv"]) - x).abs()
    assert float(error.max()) < 0.5 * float(x.abs().max())          # quantization noise, not garbage
