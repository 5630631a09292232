"""Benchmark ``wts.load`` against a per-value ``struct.unpack`` parser, on a yolov5s-sized ``.wts``.

    python tools/bench_wts.py [--baseline-values N] [--repeat R]

Writes a seeded random ``.wts`` with the exact state_dict keys and shapes of YOLOv5s v7.0 (80 classes, about
7.25 M values, 349 entries) to a temporary folder, then times in the same run:

- ``wts.load`` (the vectorised reader), best and median of ``--repeat`` runs;
- the baseline: a reader that splits each line and decodes every value with
  ``struct.unpack('>f', bytes.fromhex(token))``. It is slow, so it runs on the first ``--baseline-values`` values
  only and its per-value rate is extrapolated to the whole file (the output says so);
- for reference, the per-line reader that tensorrtx.md suggests
  (``np.frombuffer(bytes.fromhex(''.join(tokens)), '>f4')``) on the whole file.

The decoded values of both other readers are checked equal, bit for bit, to ``wts.load``'s.
"""
from __future__ import annotations

import argparse
import os
import statistics
import struct
import sys
import tempfile
import time

if __package__ in (None, ""):  # run as a script: make the repository importable
    sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import numpy as np  # noqa: E402

import wts  # noqa: E402


def yolov5s_shapes() -> dict[str, tuple[int, ...]]:
    """state_dict keys and shapes of YOLOv5s v7.0, in state_dict order, from the zoo's reference module."""
    from zoo.yolo.registry import Options
    from zoo.yolo.walker import build_module, official_table, resolve
    module = build_module(resolve(official_table("yolov5v7"), "s"), Options())
    return {key: tuple(value.shape) for key, value in module.state_dict().items()}


def random_weights(shapes: dict[str, tuple[int, ...]], seed: int = 0) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    out = {}
    for name, shape in shapes.items():
        if name.endswith("num_batches_tracked"):
            a = np.array(12345, np.int64)
        elif name.endswith("running_var"):
            a = rng.uniform(0.1, 4.0, shape)
        elif name.endswith("bn.weight"):
            a = rng.normal(1.0, 0.1, shape)
        else:
            a = rng.normal(0.0, 0.05, shape)
        out[name] = a if a.dtype == np.int64 else a.astype(np.float32)
    return out


def load_struct_baseline(path: str, max_values: int) -> tuple[dict[str, np.ndarray], int]:
    """Per-value reader (the slow way): decodes the first ``max_values`` values (whole lines) of the file."""
    out: dict[str, np.ndarray] = {}
    done = 0
    with open(path) as f:
        int(f.readline())
        for line in f:
            name, count, *tokens = line.split()
            out[name] = np.array([struct.unpack(">f", bytes.fromhex(t))[0] for t in tokens], np.float32)
            assert len(tokens) == int(count)
            done += len(tokens)
            if done >= max_values:
                break
    return out, done


def load_per_line_fromhex(path: str) -> dict[str, np.ndarray]:
    """Per-line reader (tensorrtx.md's suggestion): split each line, one bytes.fromhex per line."""
    out: dict[str, np.ndarray] = {}
    with open(path) as f:
        int(f.readline())
        for line in f:
            name, count, *tokens = line.split()
            out[name] = np.frombuffer(bytes.fromhex("".join(tokens)), ">f4").astype(np.float32)
    return out


def same_bits(a: dict[str, np.ndarray], b: dict[str, np.ndarray]) -> bool:
    return all(np.array_equal(a[k].view(np.uint32), b[k].view(np.uint32)) for k in a)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="bench_wts", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--baseline-values", type=int, default=500_000,
                   help="values the struct baseline decodes before its rate is extrapolated (default 500000)")
    p.add_argument("--repeat", type=int, default=5, help="timed runs of wts.load (default 5)")
    p.add_argument("--seed", type=int, default=0)
    args = p.parse_args(argv)

    shapes = yolov5s_shapes()
    tensors = random_weights(shapes, args.seed)
    n_values = sum(int(np.prod(s, dtype=np.int64)) for s in shapes.values())
    with tempfile.TemporaryDirectory(prefix="bench_wts_") as tmp:
        path = os.path.join(tmp, "yolov5s.wts")
        t0 = time.perf_counter()
        size = wts.save(path, tensors)
        t_save = time.perf_counter() - t0
        print(f"file: yolov5s-shaped .wts, {len(shapes)} entries, {n_values:,} values, {size:,} bytes "
              f"({size / 1e6:.1f} MB, {size / n_values:.2f} bytes/value), seed {args.seed}")
        print(f"wts.save:           {t_save * 1e3:8.1f} ms  ({n_values / t_save / 1e6:7.1f} M values/s)")

        loaded = wts.load(path)  # warm-up (page cache), and the reference values for the checks below
        times = []
        for _ in range(args.repeat):
            t0 = time.perf_counter()
            wts.load(path)
            times.append(time.perf_counter() - t0)
        t_load, t_med = min(times), statistics.median(times)
        print(f"wts.load:           {t_load * 1e3:8.1f} ms  ({n_values / t_load / 1e6:7.1f} M values/s)  "
              f"best of {args.repeat}, median {t_med * 1e3:.1f} ms")

        t0 = time.perf_counter()
        per_line = load_per_line_fromhex(path)
        t_line = time.perf_counter() - t0
        assert same_bits(loaded, per_line), "per-line reader disagrees with wts.load"
        print(f"per-line fromhex:   {t_line * 1e3:8.1f} ms  ({n_values / t_line / 1e6:7.1f} M values/s)  "
              f"whole file")

        t0 = time.perf_counter()
        subset, done = load_struct_baseline(path, args.baseline_values)
        t_sub = time.perf_counter() - t0
        assert same_bits(subset, loaded), "struct baseline disagrees with wts.load"
        per_value = t_sub / done
        t_base = per_value * n_values
        print(f"struct per value:   {t_base * 1e3:8.1f} ms  ({1 / per_value / 1e6:7.1f} M values/s)  "
              f"EXTRAPOLATED from {done:,} values ({t_sub * 1e3:.1f} ms, {per_value * 1e9:.0f} ns/value)")

        print(f"speed-up of wts.load: {t_base / t_load:.1f}x over struct per value (best; "
              f"{t_base / t_med:.1f}x on the median), {t_line / t_load:.1f}x over per-line fromhex")
    return 0


if __name__ == "__main__":
    sys.exit(main())
