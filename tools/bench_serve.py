"""Load figures of both serving routes: requests/s and p50/p99 latency at several concurrencies, dynamic batching
on vs off, measured in one run so the ratios compare like with like.

    python tools/bench_serve.py                       # built-in service and Triton, yolov5n at 160 px
    python tools/bench_serve.py --routes builtin --input-size 320 --requests 64
    python tools/bench_serve.py --routes builtin --backends reference auto --concurrency 32 --requests 32
    python tools/bench_serve.py --routes builtin --baseline /path/to/older/checkout   # before/after, one run

The images are the project's own (tests/data/images), sent round-robin; every request is one encoded image. Each
configuration starts its own server on a free loopback port, and the server is stopped at the end. Random YOLOv5n
weights, a reference engine file; the built-in service runs it with each of `--backends` (auto: ONNX Runtime
where TensorRT is absent), the Triton python step with auto. The figures measure the serving machinery on a CPU,
not a deployed GPU engine.
"""
from __future__ import annotations

import argparse
import json
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:  # run as a script: the checkout's zoo, not another installed one
    sys.path.insert(0, str(ROOT))
IMAGES = sorted((ROOT / "tests" / "data" / "images").iterdir())


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def zoo(*argv) -> None:
    subprocess.run([sys.executable, "-m", "zoo.yolov5", *map(str, argv)], cwd=ROOT, check=True,
                   stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


def load(send, concurrency: int, requests: int) -> dict:
    """`requests` calls of send(image bytes) from `concurrency` threads: requests/s, p50, p99 (ms)."""
    payloads = [p.read_bytes() for p in IMAGES]
    for i in range(min(4, requests)):  # warm-up, not counted
        send(payloads[i % len(payloads)])

    def timed(i):
        start = time.perf_counter()
        send(payloads[i % len(payloads)])
        return time.perf_counter() - start

    start = time.perf_counter()
    with ThreadPoolExecutor(concurrency) as pool:
        latencies = list(pool.map(timed, range(requests)))
    wall = time.perf_counter() - start
    result = {"rps": requests / wall, "p50": 1000 * float(np.percentile(latencies, 50)),
              "p99": 1000 * float(np.percentile(latencies, 99))}
    print(f"  concurrency {concurrency}: {result['rps']:.1f} req/s, p50 {result['p50']:.0f} ms, "
          f"p99 {result['p99']:.0f} ms", file=sys.stderr, flush=True)
    return result


def builtin_route(engine: Path, batching: bool, concurrencies, requests: int, backend: str | None = "auto",
                  checkout: Path = ROOT) -> dict:
    """`backend` None: the checkout's own default (a baseline checkout may predate --backend's choices)."""
    port = free_port()
    flags = ["--max-batch", 8, "--max-delay-ms", 5] if batching else ["--max-batch", 1]
    command = ["serve", "--engine", engine, "--port", port, "--workers", 1, "--threads", 64, "--max-queue", 256,
               *(["--backend", backend] if backend else []), *flags]
    server = subprocess.Popen([sys.executable, "-m", "zoo.yolov5", *map(str, command)], cwd=checkout,
                              env={**os.environ, "PYTHONPATH": str(checkout)},
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    url = f"http://127.0.0.1:{port}"
    try:
        wait(lambda: urllib.request.urlopen(f"{url}/health", timeout=2).status == 200, server)

        def send(data: bytes) -> None:
            req = urllib.request.Request(f"{url}/v1/predict", data=data, method="POST",
                                         headers={"Content-Type": "application/octet-stream"})
            with urllib.request.urlopen(req, timeout=300) as response:
                json.load(response)

        return {c: load(send, c, requests) for c in concurrencies}
    finally:
        server.send_signal(signal.SIGTERM)
        server.wait(60)


def triton_route(engine: Path, batching: bool, concurrencies, requests: int, work: Path) -> dict:
    from zoo.triton.client import client_for, infer_bytes
    from zoo.triton.server import TritonServer
    repo = work / ("repo-batching" if batching else "repo-single")
    zoo("export", "triton", "--engine", engine, "-o", repo, "--network", "python",
        *([] if batching else ["--no-dynamic-batching"]))
    with TritonServer(repo, http_port=free_port(), grpc_port=0, metrics_port=free_port()) as server:
        def send(data: bytes) -> None:
            record = infer_bytes(client_for(server.url), "yolov5", data, "bench")
            assert "error" not in record, record

        return {c: load(send, c, requests) for c in concurrencies}


def wait(ready, process, timeout: float = 180) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError("the server exited while starting")
        try:
            if ready():
                return
        except (OSError, urllib.error.URLError):
            time.sleep(0.25)
    raise TimeoutError("the server did not start")


def table(results: dict, concurrencies) -> str:
    lines = ["| route | concurrency | batching off: req/s, p50, p99 (ms) | batching on: req/s, p50, p99 (ms) | "
             "throughput on/off |", "|---|---|---|---|---|"]
    for route, by_mode in results.items():
        for c in concurrencies:
            off, on = by_mode[False][c], by_mode[True][c]
            cell = lambda r: f"{r['rps']:.1f}, {r['p50']:.0f}, {r['p99']:.0f}"
            lines.append(f"| {route} | {c} | {cell(off)} | {cell(on)} | **{on['rps'] / off['rps']:.2f}x** |")
    return "\n".join(lines)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--routes", nargs="+", choices=("builtin", "triton"), default=["builtin", "triton"])
    parser.add_argument("--concurrency", type=int, nargs="+", default=[1, 8, 32])
    parser.add_argument("--requests", type=int, default=64, help="requests per concurrency level (default 64)")
    parser.add_argument("--input-size", type=int, default=160, help="YOLOv5n input size (default 160)")
    parser.add_argument("--backends", nargs="+", choices=("auto", "reference", "onnx"), default=["auto"],
                        help="executors of the built-in service, each a row (default auto)")
    parser.add_argument("--baseline", type=Path,
                        help="another checkout whose built-in service, at its defaults, is a row too (before/after)")
    args = parser.parse_args()
    results = {}
    with tempfile.TemporaryDirectory(prefix="bench-serve-") as tmp:
        work = Path(tmp)
        engine = work / "y5n.engine"
        zoo("build", "--input-size", args.input_size, "--batch", "1:8:8", "-o", engine)
        load_before = os.getloadavg()[0]
        rows = [(route, backend) for route in args.routes
                for backend in (args.backends if route == "builtin" else ["auto"])]
        if args.baseline:
            rows.insert(0, ("builtin", None))
        for route, backend in rows:
            row = f"{route} ({backend or 'baseline checkout'})"
            results[row] = {}
            for batching in (False, True):
                print(f"{row}, batching {'on' if batching else 'off'} ...", file=sys.stderr, flush=True)
                results[row][batching] = (
                    builtin_route(engine, batching, args.concurrency, args.requests, backend,
                                  args.baseline.resolve() if backend is None else ROOT)
                    if route == "builtin" else
                    triton_route(engine, batching, args.concurrency, args.requests, work))
    print(f"yolov5n (random weights) at {args.input_size} px on {os.cpu_count()} CPU cores, {args.requests} requests "
          f"per level over the project's {len(IMAGES)} images; load average {load_before:.1f} before, "
          f"{os.getloadavg()[0]:.1f} after")
    print(table(results, args.concurrency))
    for base_row in ("builtin (reference)", "builtin (baseline checkout)"):
        if base_row not in results:
            continue
        base = results[base_row][True]
        for backend in args.backends:
            if f"builtin ({backend})" != base_row and f"builtin ({backend})" in results:
                mine = results[f"builtin ({backend})"][True]
                print(f"builtin, batching on, {backend} / {base_row[9:-1]} requests/s: " +
                      ", ".join(f"concurrency {c} **{mine[c]['rps'] / base[c]['rps']:.2f}x**"
                                for c in args.concurrency))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
