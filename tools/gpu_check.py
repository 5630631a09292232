"""One prepared check of everything the zoo runs on a GPU, for a machine with a GPU and no network and no install.

    PYTHONPATH=. python tools/gpu_check.py          # or: make gpu-check

Needs only what such a machine has: CUDA PyTorch, Triton, cuda-python (TensorRT optional). Triton's interpreter is
off (TRITON_INTERPRET is removed before anything imports triton). The checks, each timed:

1. the `cuda` tests (pytest -m cuda): kernels on the device, letterbox, NMS, the reference backend on CUDA;
2. the AOT decode plugin's PTX, capped at this driver's PTX ISA, loaded with cuModuleLoadData and launched with
   TensorRT's parameter order (feat, H, W, out) into a NaN-filled output, against the PyTorch reference, at batch 1
   and batch 32;
3. yolov5n end to end (letterbox kernel, network, decode kernel, NMS) with `infer --backend reference --device
   cuda`, against the same command on the CPU;
4. GPU-vs-GPU timings: the decode kernel against its PyTorch reference on CUDA, NMS on CUDA against the CPU;
5. the `tensorrt` tests, when `tensorrt` imports.

It prints one table (check, result, seconds). Where there is no GPU every check says why it was skipped and the
exit status is 0; otherwise it is 1 when a check failed.
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))


class Skip(Exception):
    """A check that cannot run here; the message says why."""


def _cuda_or_skip():
    import torch
    if not torch.cuda.is_available():
        raise Skip(f"no CUDA device visible to PyTorch {torch.__version__} (CPU build, or no GPU)")
    return torch


def _pytest(marker: str) -> str:
    env = {k: v for k, v in os.environ.items() if k != "TRITON_INTERPRET"}
    env["ZOO_TEST_NO_INTERPRETER"] = "1"  # tests/conftest.py then leaves the interpreter off
    env["PYTHONPATH"] = str(ROOT) + os.pathsep + env.get("PYTHONPATH", "")
    proc = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-m", marker, "tests"],
                          cwd=ROOT, env=env, capture_output=True, text=True, timeout=1200)
    summary = (proc.stdout.strip().splitlines() or ["no output"])[-1]
    if proc.returncode not in (0, 5):  # 5: nothing collected
        raise AssertionError(f"{summary}\n{proc.stdout[-3000:]}{proc.stderr[-1000:]}")
    return summary


def check_cuda_tests() -> str:
    _cuda_or_skip()
    return _pytest("cuda")


def check_tensorrt_tests() -> str:
    from zoo.engine.gpu import gpu_status
    available, reason = gpu_status()
    if not available:
        raise Skip(f"TensorRT cannot run here: {reason}")
    return _pytest("tensorrt")


def _driver_check(result):
    err, *values = result
    if int(err) != 0:
        raise RuntimeError(f"CUDA driver error {err}")
    return values[0] if len(values) == 1 else tuple(values) or None


def check_aot_ptx() -> str:
    """The PTX TensorRT would embed, loaded and launched by the driver as TensorRT launches it."""
    torch = _cuda_or_skip()
    if os.environ.get("TRITON_INTERPRET"):
        raise Skip("TRITON_INTERPRET is set in this process: run tools/gpu_check.py as a script")
    import ctypes

    import numpy as np
    from cuda.bindings import driver

    from plugins.ptx import driver_version, ptx_version
    from plugins.yolo_decode import decode_reference
    from plugins.yolo_decode.kernel import compile_decode_ptx

    major, minor = torch.cuda.get_device_capability()
    version = ptx_version()
    anchors = np.array([116, 90, 156, 198, 373, 326], np.float32)
    torch.zeros(1, device="cuda")  # makes the primary context current on this thread
    results = []
    for dtype, name in ((torch.float32, "fp32"), (torch.float16, "fp16")):
        kernel = compile_decode_ptx(in_dtype=name, stride=32, anchors=anchors, num_outputs=85,
                                    cc=major * 10 + minor, ptx_version=version)
        module = _driver_check(driver.cuModuleLoadData(kernel.ptx.encode() + b"\0"))
        function = _driver_check(driver.cuModuleGetFunction(module, kernel.name.encode()))
        for batch in (1, 32):
            h, w = 20, 24
            feat = (torch.randn(batch, 3 * 85, h, w, device="cuda") * 4).to(dtype)
            out = torch.full((batch, 3 * h * w, 85), float("nan"), device="cuda")
            params = ((feat.data_ptr(), h, w, out.data_ptr()),
                      (ctypes.c_void_p, ctypes.c_int, ctypes.c_int, ctypes.c_void_p))
            grid = (-(-h * w // kernel.block_cells), 3, batch)
            _driver_check(driver.cuLaunchKernel(function, *grid, kernel.threads, 1, 1, kernel.shared_mem,
                                                driver.CUstream(torch.cuda.current_stream().cuda_stream), params,
                                                0))
            torch.cuda.synchronize()
            expected = decode_reference(feat.cpu(), stride=32, anchors=anchors, num_outputs=85)
            if torch.isnan(out).any():
                raise AssertionError(f"{name} batch {batch}: the kernel left outputs unwritten (NaN)")
            torch.testing.assert_close(out.cpu(), expected, rtol=1e-5, atol=1e-4)
            results.append(f"{name} b{batch}")
        _driver_check(driver.cuModuleUnload(module))
    driver_text = f"driver CUDA {driver_version() / 1000:g}" if driver_version() else "driver ?"
    isa = f"PTX ISA {version // 10}.{version % 10}" if version else "Triton's default ISA"
    return f"{isa} ({driver_text}), sm_{major}{minor}: " + ", ".join(results) + " equal the reference"


def _infer(device: str, out: Path) -> list[dict]:
    env = {k: v for k, v in os.environ.items() if k != "TRITON_INTERPRET"}
    env["PYTHONPATH"] = str(ROOT) + os.pathsep + env.get("PYTHONPATH", "")
    cmd = [sys.executable, "-m", "zoo.yolov5", "infer", "--backend", "reference", "--device", device, "--source",
           "tests/data/images", "--input-size", "320", "--conf", "0.05", "--out", str(out), "--no-draw"]
    proc = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=600)
    if proc.returncode != 0:
        raise AssertionError(f"{' '.join(cmd)}: exit {proc.returncode}: {proc.stderr[-2000:]}")
    return [json.loads(line) for line in (out / "predictions.jsonl").read_text().splitlines()]


def check_yolov5n_end_to_end() -> str:
    _cuda_or_skip()
    import tempfile

    import numpy as np
    with tempfile.TemporaryDirectory() as tmp:
        cpu, cuda = _infer("cpu", Path(tmp) / "cpu"), _infer("cuda", Path(tmp) / "cuda")
    detections = 0
    for a, b in zip(cpu, cuda, strict=True):
        if len(a["detections"]) != len(b["detections"]):
            raise AssertionError(f"{a['file']}: {len(a['detections'])} detections on the CPU, "
                                 f"{len(b['detections'])} on CUDA")
        for da, db in zip(a["detections"], b["detections"]):
            # the letterbox kernel may differ from the CPU letterbox by one grey level: boxes move a little
            if da["class_id"] != db["class_id"] or np.abs(np.subtract(da["box"], db["box"])).max() > 2.0 or \
                    abs(da["score"] - db["score"]) > 5e-3:
                raise AssertionError(f"{a['file']}: {da} on the CPU, {db} on CUDA")
        detections += len(a["detections"])
    return f"{len(cpu)} images, {detections} detections: CUDA reference = CPU reference"


def check_gpu_timings() -> str:
    """Ratios measured in the same run, GPU against GPU (and NMS on CUDA against the CPU)."""
    torch = _cuda_or_skip()
    if os.environ.get("TRITON_INTERPRET"):
        raise Skip("TRITON_INTERPRET is set in this process: run tools/gpu_check.py as a script")
    import numpy as np

    from plugins.yolo_decode import decode_reference
    from plugins.yolo_decode.kernel import decode_triton
    from zoo.engine.timing import median_ms
    from zoo.vision.nms import batched_nms

    anchors = np.array([10, 13, 16, 30, 33, 23], np.float32)
    feat = torch.randn(16, 255, 80, 80, device="cuda")

    def timed(fn):
        def run():
            fn()
            torch.cuda.synchronize()
        return median_ms(run, 3, 20)

    kernel = timed(lambda: decode_triton(feat, stride=8, anchors=anchors, num_outputs=85))
    reference = timed(lambda: decode_reference(feat, stride=8, anchors=anchors, num_outputs=85))
    prediction = decode_reference(feat, stride=8, anchors=anchors, num_outputs=85)
    nms_cuda = timed(lambda: batched_nms(prediction, 0.25, 0.45, None, False, 300))
    cpu_prediction = prediction.cpu()
    nms_cpu = median_ms(lambda: batched_nms(cpu_prediction, 0.25, 0.45, None, False, 300), 1, 5)
    return (f"decode kernel {kernel:.3f} ms vs torch on CUDA {reference:.3f} ms ({kernel / reference:.2f}x); "
            f"NMS CUDA {nms_cuda:.2f} ms vs CPU {nms_cpu:.2f} ms ({nms_cuda / nms_cpu:.2f}x); batch 16, 80x80")


CHECKS = [
    ("cuda tests", check_cuda_tests),
    ("AOT plugin PTX (cuModuleLoadData)", check_aot_ptx),
    ("yolov5n CUDA vs CPU reference", check_yolov5n_end_to_end),
    ("GPU timings", check_gpu_timings),
    ("tensorrt tests", check_tensorrt_tests),
]


def main(checks=CHECKS) -> int:
    rows, failed = [], False
    for name, check in checks:
        start = time.perf_counter()
        try:
            result = "PASS  " + check()
        except Skip as e:
            result = f"SKIP  {e}"
        except Exception as e:  # a failed check is a row of the table, not the end of the run
            failed = True
            result = f"FAIL  {type(e).__name__}: {' '.join(str(e).split())[:600]}"
        rows.append((name, result, time.perf_counter() - start))
        print(f"{name}: {result.split()[0]}", file=sys.stderr, flush=True)
    width = max(len(name) for name, _, _ in rows)
    print(f"{'check':<{width}}  {'seconds':>7}  result")
    for name, result, seconds in rows:
        print(f"{name:<{width}}  {seconds:7.1f}  {result}")
    return 1 if failed else 0


if __name__ == "__main__":
    os.environ.pop("TRITON_INTERPRET", None)  # before anything imports triton: the real compiler, on the device
    sys.exit(main())
