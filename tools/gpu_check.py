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
5. zoo::ms_deform_attn's AOT PTX at RT-DETR-l's shapes, launched as TensorRT launches it, against the reference,
   and its time against the PyTorch reference on CUDA;
6. the `tensorrt` tests, when `tensorrt` imports.

It prints one table (check, result, seconds). Where there is no GPU, or no torch, Triton or cuda-python for this
python, every check says why it was skipped and the exit status is 0; otherwise it is 1 when a check failed.
`make gpu-check` runs it with the project's python when that has CUDA PyTorch, else with the system's.
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


# Third-party modules a check may need; one that is missing for this python makes the check a skip, not a failure.
OPTIONAL_MODULES = {"torch", "numpy", "triton", "cuda", "tensorrt", "pytest", "cv2", "PIL"}


def _cuda_or_skip():
    try:
        import torch
    except ImportError as e:
        raise Skip(f"no PyTorch for {sys.executable} ({e}); run with a python that has CUDA PyTorch") from None
    if not torch.cuda.is_available():
        raise Skip(f"no CUDA device visible to PyTorch {torch.__version__} (CPU build, or no GPU)")
    return torch


def _pytest(marker: str) -> str:
    import pytest  # noqa: F401 - a missing pytest is a skip (OPTIONAL_MODULES), not a subprocess failure
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
    try:
        from cuda.bindings import driver
    except ImportError as e:
        raise Skip(f"cuda-python is not installed for {sys.executable} ({e}): the driver API loads the PTX") from None

    from plugins.ptx import driver_version, ptx_version
    from plugins.yolo_decode import decode_reference
    from plugins.yolo_decode.kernel import compile_decode_ptx

    major, minor = torch.cuda.get_device_capability()
    version = ptx_version(cc=major * 10 + minor)
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


E2E_CONF = 0.5          # far from random yolov5n's scores near 0, and well below the 1.0 many of them saturate at
E2E_MARGIN = 0.05       # detections this close to the threshold may be on one side of it only
E2E_SATURATED = 0.999   # scores this close to 1 tie, and NMS breaks ties by order: those are not compared either
E2E_MATCHED = 0.95      # the share of comparable detections that must have a counterpart on the other device


def _infer(device: str, out: Path, source: Path = ROOT / "tests" / "data" / "images") -> list[dict]:
    env = {k: v for k, v in os.environ.items() if k != "TRITON_INTERPRET"}
    env["PYTHONPATH"] = str(ROOT) + os.pathsep + env.get("PYTHONPATH", "")
    cmd = [sys.executable, "-m", "zoo.yolov5", "infer", "--backend", "reference", "--device", device, "--source",
           str(source), "--input-size", "320", "--conf", str(E2E_CONF), "--max-det", "100000",
           "--out", str(out), "--no-draw"]
    proc = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=600)
    if proc.returncode != 0:
        raise AssertionError(f"{' '.join(cmd)}: exit {proc.returncode}: {proc.stderr[-2000:]}")
    return [json.loads(line) for line in (out / "predictions.jsonl").read_text().splitlines()]


def _raw_outputs_difference(torch, devices=("cpu", "cuda")) -> str:
    """yolov5n's network (seeded random weights, input 320) on the CUDA and the CPU reference backend, on the same
    input: the well-posed comparison. TF32 is turned off, as runner_for does for TensorRT, so both are FP32."""
    from zoo.engine.backends import ReferenceBackend
    from zoo.engine.cli import make_parser
    from zoo.engine.networks import define_network, load_weights
    from zoo.registry import family
    torch.backends.cuda.matmul.allow_tf32 = False
    torch.backends.cudnn.allow_tf32 = False
    model = family("yolov5").load()
    args = make_parser(model).parse_args(["build", "--input-size", "320", "-o", "unused.engine"])
    weights, config, _ = load_weights(model, args)
    x = torch.from_numpy(model.sample_input(config, 2, 0))
    outputs = []
    for device in devices:
        backend = ReferenceBackend(device)
        net, names = define_network(model, backend, weights, config)
        got = backend.runner_for(net).run({model.input_name: x.to(device)})
        outputs.append({name: got[name].float().cpu() for name in names})
    worst = 0.0
    for name, cpu in outputs[0].items():
        scale = max(cpu.abs().max().item(), 1e-6)
        difference = (outputs[1][name] - cpu).abs().max().item() / scale
        if not difference <= 1e-4:
            raise AssertionError(f"raw output {name}: CUDA and CPU differ by {difference:.2e} of its largest value")
        worst = max(worst, difference)
    return f"raw outputs within {worst:.1e} of their scale"


E2E_BOX_PX = 2.0        # a grey level of letterbox difference moves a box by less than this, in original pixels


def _with_counterpart(mine: list[dict], theirs: list[dict]) -> int:
    """How many of `mine` have a box of the same class on the other side whose corners are all within E2E_BOX_PX
    (not IoU: boxes clipped to the image edge can have no area; not one-to-one: random weights leave thousands of
    overlapping boxes after NMS)."""
    import torch
    if not mine or not theirs:
        return 0
    a = torch.tensor([[*d["box"], d["class_id"]] for d in mine], dtype=torch.float64)
    b = torch.tensor([[*d["box"], d["class_id"]] for d in theirs], dtype=torch.float64)
    distance = (a[:, None, :4] - b[None, :, :4]).abs().amax(dim=2)
    distance[a[:, 4:5] != b[:, 4].unsqueeze(0)] = float("inf")
    return int((distance.amin(dim=1) <= E2E_BOX_PX).sum())


def check_yolov5n_end_to_end() -> str:
    """The network's raw outputs first (same input, both devices), then whole `infer` runs: the detections away from
    the threshold and from score ties must find a same-class box on the other device (corners within 2 px).
    Detection i is not compared with detection i: the letterbox kernel may differ from the CPU's by a grey level,
    which reorders close scores."""
    torch = _cuda_or_skip()
    import tempfile
    raw = _raw_outputs_difference(torch)
    with tempfile.TemporaryDirectory() as tmp:
        cpu, cuda = _infer("cpu", Path(tmp) / "cpu"), _infer("cuda", Path(tmp) / "cuda")
    compared = matched = 0
    for a, b in zip(cpu, cuda, strict=True):
        for mine, theirs in ((a["detections"], b["detections"]), (b["detections"], a["detections"])):
            comparable = [d for d in mine if E2E_CONF + E2E_MARGIN <= d["score"] < E2E_SATURATED]
            compared += len(comparable)
            matched += _with_counterpart(comparable, theirs)
    if compared and matched < E2E_MATCHED * compared:
        raise AssertionError(f"{raw}; only {matched} of {compared} detections (score {E2E_CONF + E2E_MARGIN} to "
                             f"{E2E_SATURATED}) have a counterpart on the other device")
    return (f"{raw}; {len(cpu)} images: {matched} of {compared} comparable detections matched by box "
            f"(conf {E2E_CONF})")


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


def check_ms_deform_attn() -> str:
    """zoo::ms_deform_attn's AOT PTX at RT-DETR-l's shapes (Q=300, M=8, L=3, P=4, D=32, levels 80/40/20), loaded
    with cuModuleLoadData and launched as TensorRT launches it ((value, locations, weights, Q, out), grid (Q / 16,
    heads, batch)) into a NaN-filled output, against the PyTorch reference; then the kernel's time against the
    reference's (grid_sample per level), both on CUDA in this run."""
    torch = _cuda_or_skip()
    if os.environ.get("TRITON_INTERPRET"):
        raise Skip("TRITON_INTERPRET is set in this process: run tools/gpu_check.py as a script")
    import ctypes
    try:
        from cuda.bindings import driver
    except ImportError as e:
        raise Skip(f"cuda-python is not installed for {sys.executable} ({e}): the driver API loads the PTX") from None

    from plugins.ms_deform_attn import ms_deform_attn_reference
    from plugins.ms_deform_attn.kernel import compile_ms_deform_attn_ptx, ms_deform_attn_triton
    from plugins.ptx import ptx_version
    from zoo.engine.timing import median_ms

    levels, (heads, channels, points, queries) = ((80, 80), (40, 40), (20, 20)), (8, 32, 4, 300)
    cc = torch.cuda.get_device_capability()
    cc = cc[0] * 10 + cc[1]
    torch.zeros(1, device="cuda")  # makes the primary context current on this thread
    g = torch.Generator().manual_seed(0)
    results = []
    for dtype, name in ((torch.float32, "fp32"), (torch.float16, "fp16")):
        kernel = compile_ms_deform_attn_ptx(dtype=name, spatial_shapes=levels, heads=heads, channels=channels,
                                            points=points, cc=cc, ptx_version=ptx_version(cc=cc))
        module = _driver_check(driver.cuModuleLoadData(kernel.ptx.encode() + b"\0"))
        function = _driver_check(driver.cuModuleGetFunction(module, kernel.name.encode()))
        for batch in (1, 4):
            value = torch.randn(batch, sum(h * w for h, w in levels), heads, channels, generator=g).to(dtype)
            loc = (torch.rand(batch, queries, heads, len(levels), points, 2, generator=g) * 1.4 - 0.2).to(dtype)
            weights = torch.rand(batch, queries, heads, len(levels), points, generator=g).to(dtype)
            device = [t.cuda() for t in (value, loc, weights)]
            out = torch.full((batch, queries, heads * channels), float("nan"), dtype=dtype, device="cuda")
            params = ((*(t.data_ptr() for t in device), queries, out.data_ptr()),
                      (ctypes.c_void_p, ctypes.c_void_p, ctypes.c_void_p, ctypes.c_int, ctypes.c_void_p))
            grid = (-(-queries // kernel.block_queries), heads, batch)
            _driver_check(driver.cuLaunchKernel(function, *grid, kernel.threads, 1, 1, kernel.shared_mem,
                                                driver.CUstream(torch.cuda.current_stream().cuda_stream), params,
                                                0))
            torch.cuda.synchronize()
            if torch.isnan(out).any():
                raise AssertionError(f"{name} batch {batch}: the kernel left outputs unwritten (NaN)")
            tol = 1e-5 if dtype == torch.float32 else 2 ** -9
            torch.testing.assert_close(out.cpu().float(), ms_deform_attn_reference(value, loc, weights, levels).float(),
                                       rtol=tol, atol=tol)
            results.append(f"{name} b{batch}")
        _driver_check(driver.cuModuleUnload(module))

    def timed(fn):
        def run():
            fn()
            torch.cuda.synchronize()
        return median_ms(run, 3, 20)

    value, loc, weights = device
    kernel_ms = timed(lambda: ms_deform_attn_triton(value, loc, weights, levels))
    reference_ms = timed(lambda: ms_deform_attn_reference(value, loc, weights, levels))
    return (", ".join(results) + f" equal the reference; batch 4 fp16: kernel {kernel_ms:.3f} ms vs torch on CUDA "
            f"{reference_ms:.3f} ms ({kernel_ms / reference_ms:.2f}x)")


CHECKS = [
    ("cuda tests", check_cuda_tests),
    ("AOT plugin PTX (cuModuleLoadData)", check_aot_ptx),
    ("yolov5n CUDA vs CPU reference", check_yolov5n_end_to_end),
    ("GPU timings", check_gpu_timings),
    ("ms_deform_attn PTX and timing", check_ms_deform_attn),
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
        except ModuleNotFoundError as e:
            if (e.name or "").split(".")[0] not in OPTIONAL_MODULES:
                failed = True
                result = f"FAIL  {type(e).__name__}: {e}"
            else:
                result = f"SKIP  {e.name} is not installed for {sys.executable}"
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
