"""zoo::ms_deform_attn on the CPU executors at RT-DETR's shapes: the plugin form and the plain-layer form against
PyTorch eager, in one run.

    python tools/bench_ms_deform_attn.py                       # RT-DETR-l at 640: Q=300, M=8, L=3, P=4, D=32
    python tools/bench_ms_deform_attn.py --batches 1,4 --iterations 10

One network per form (the op alone: value, sampling locations and attention weights in, the (B, Q, M*D) output
out), run by the reference backend (PyTorch, as `--backend reference` runs it) and written as ONNX and run by ONNX
Runtime (as `--backend auto` runs it on a machine without TensorRT; the plugin layer becomes its ONNX form). The
baseline is the PyTorch reference eagerly under inference_mode (the computation of ultralytics' decoder: one
grid_sample per level). Same inputs everywhere; median milliseconds per call and ratios against eager; every
output is compared with eager's, so a fast wrong answer cannot pass unnoticed. PyTorch and ONNX Runtime get the
same threads. The Triton kernel is a GPU path (tools/gpu_check.py times it on CUDA).
"""
from __future__ import annotations

import argparse
import os
import sys

if __package__ in (None, ""):  # run as a script: make the repository importable
    sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import torch  # noqa: E402

from plugins.ms_deform_attn import add_ms_deform_attn, ms_deform_attn_reference  # noqa: E402
from zoo.engine.onnx.runner import OnnxRunner, available_cores  # noqa: E402
from zoo.engine.onnx.writer import to_onnx  # noqa: E402
from zoo.engine.reference.executor import ReferenceExecutor  # noqa: E402
from zoo.engine.reference.network import INetworkDefinition  # noqa: E402
from zoo.engine.timing import median_ms  # noqa: E402
from zoo.trt_api import trt  # noqa: E402

RTDETR_L = dict(levels=((80, 80), (40, 40), (20, 20)), queries=300, heads=8, points=4, channels=32)


def sample_inputs(batch: int, levels, queries: int, heads: int, points: int, channels: int, seed: int = 0):
    g = torch.Generator().manual_seed(seed)
    value = torch.randn(batch, sum(h * w for h, w in levels), heads, channels, generator=g)
    loc = torch.rand(batch, queries, heads, len(levels), points, 2, generator=g) * 1.2 - 0.1
    weights = torch.randn(batch, queries, heads, len(levels) * points, generator=g).softmax(-1)
    return {"value": value, "locations": loc, "weights": weights.view(batch, queries, heads, len(levels), points)}


def network(form: str, feeds: dict, levels) -> INetworkDefinition:
    net = INetworkDefinition()
    tensors = [net.add_input(name, trt.float32, (-1, *x.shape[1:])) for name, x in feeds.items()]
    net.mark_output(add_ms_deform_attn(net, *tensors, spatial_shapes=levels, name="attn", form=form))
    return net


def relative_error(got: torch.Tensor, ref: torch.Tensor) -> float:
    return (got.double() - ref.double()).abs().max().item() / max(1.0, ref.abs().max().item())


def bench(batch: int, warmup: int, iterations: int, threads: int) -> list[tuple[str, float, float]]:
    levels = RTDETR_L["levels"]
    feeds = sample_inputs(batch, **RTDETR_L)
    with torch.inference_mode():
        expected = ms_deform_attn_reference(*feeds.values(), levels)
        rows = [("PyTorch eager (reference)", median_ms(lambda: ms_deform_attn_reference(*feeds.values(), levels),
                                                         warmup, iterations), 0.0)]
    for form in ("plugin", "layers"):
        net = network(form, feeds, levels)
        executor = ReferenceExecutor(net)
        got = executor.run(feeds)["attn"]
        rows.append((f"reference backend, {form}", median_ms(lambda: executor.run(feeds), warmup, iterations),
                     relative_error(got, expected)))
        runner = OnnxRunner(to_onnx(net).SerializeToString(), threads=threads)
        arrays = {k: v.numpy() for k, v in feeds.items()}
        got = runner.run(arrays)["attn"]
        rows.append((f"ONNX Runtime, {form}", median_ms(lambda: runner.run(arrays), warmup, iterations),
                     relative_error(torch.as_tensor(got), expected)))
    return rows


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--batches", default="1", help="comma-separated batch sizes (default 1)")
    parser.add_argument("--iterations", type=int, default=10, help="timed calls per row (median reported)")
    parser.add_argument("--warmup", type=int, default=2, help="untimed calls first")
    args = parser.parse_args(argv)
    threads = available_cores()
    torch.set_num_threads(threads)
    s = RTDETR_L
    print(f"ms_deform_attn, RT-DETR-l shapes: Q={s['queries']} M={s['heads']} L={len(s['levels'])} P={s['points']} "
          f"D={s['channels']} levels {s['levels']}; {threads} threads; median of {args.iterations}")
    for batch in (int(b) for b in args.batches.split(",")):
        rows = bench(batch, args.warmup, args.iterations, threads)
        eager = rows[0][1]
        print(f"\nbatch {batch}\n{'executor, form':<30} {'ms':>9} {'x eager':>8} {'max rel err':>12}")
        for name, ms, error in rows:
            print(f"{name:<30} {ms:9.2f} {ms / eager:8.2f} {error:12.1e}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
