"""The CPU executors against PyTorch eager, in one run: reference backend, ONNX Runtime FP32 and INT8, PyTorch eager.

    python tools/bench_onnx.py                                  # `make bench`: every family's smallest variant, batch 1
    python tools/bench_onnx.py --models resnet50,yolov5s --batches 1,8 --iterations 5

For each model and batch: the same seeded random weights and the same input; the network defined once by the
model's builder and run by the reference backend (as `--backend reference` runs it); written as ONNX by the zoo's
writer and run by ONNX Runtime (as `--backend auto` runs it on a machine without TensorRT: threads from the cores
available, graph optimizations on); its INT8 form (Q/DQ with scales from the max of the FP32 activations on the
same input: a speed measurement, not an accuracy one) on ONNX Runtime's integer kernels; the PyTorch reference module
eagerly under inference_mode. Median milliseconds per batch, ratios against eager and INT8 against FP32 from the
same run. The FP32 outputs of the two executors are compared too (relative to max(1, max|ref|)), and INT8's cosine
to FP32, so a fast wrong answer cannot pass unnoticed. PyTorch and ONNX Runtime get the same number of threads.
"""
from __future__ import annotations

import argparse
import os
import sys
import time

if __package__ in (None, ""):  # run as a script: make the repository importable
    sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import torch  # noqa: E402

MODELS = {  # name: (family, flags of `validate` that select the variant and input size)
    "resnet50": ("resnet", ["--depth", "50", "--input-size", "224"]),
    "yolov5s": ("yolov5", ["--variant", "s", "--input-size", "640"]),
    "resnet18": ("resnet", ["--depth", "18", "--input-size", "224"]),
    "yolov5n": ("yolov5", ["--variant", "n", "--input-size", "640"]),
    "mobilenet_v2": ("mobilenet", ["--variant", "mobilenet_v2"]),
    # the smallest variant of every family at its usual input size (`make bench`)
    "alexnet": ("alexnet", []),
    "convnext_tiny": ("convnext", ["--variant", "convnext_tiny"]),
    "densenet121": ("densenet", ["--variant", "densenet121"]),
    "efficientnet_b0": ("efficientnet", ["--variant", "efficientnet_b0"]),
    "googlenet": ("googlenet", []),
    "inception_v3": ("inception", []),
    "lenet5": ("lenet", []),
    "mnasnet0_5": ("mnasnet", ["--variant", "mnasnet0_5"]),
    "mobilenet_v3_small": ("mobilenet", ["--variant", "mobilenet_v3_small"]),
    "regnet_x_400mf": ("regnet", ["--variant", "regnet_x_400mf"]),
    "shufflenet_v2_x0_5": ("shufflenet", ["--variant", "shufflenet_v2_x0_5"]),
    "squeezenet1_1": ("squeezenet", ["--variant", "squeezenet1_1"]),
    "vgg11": ("vgg", ["--variant", "vgg11"]),
    "vit_b_32": ("vit", ["--variant", "vit_b_32"]),
    "yolo11n": ("yolo11", ["--variant", "n", "--input-size", "640"]),
    "yolov8n": ("yolov8", ["--variant", "n", "--input-size", "640"]),
}
FAMILIES = ["alexnet", "convnext_tiny", "densenet121", "efficientnet_b0", "googlenet", "inception_v3", "lenet5",
            "mnasnet0_5", "mobilenet_v3_small", "regnet_x_400mf", "resnet18", "shufflenet_v2_x0_5", "squeezenet1_1",
            "vgg11", "vit_b_32", "yolo11n", "yolov5n", "yolov8n"]


def cosine(a: torch.Tensor, b: torch.Tensor) -> float:
    return torch.nn.functional.cosine_similarity(a.flatten().double(), b.flatten().double(), dim=0).item()


def int8_runner(model, weights, config, x, max_batch: int, threads: int):
    """INT8 on ONNX Runtime, scales from the max of the FP32 activations on `x` (speed only), on `threads` threads
    like the FP32 session it is compared with."""
    from zoo.engine import quantization
    from zoo.engine.onnx.backend import OnnxBackend
    from zoo.engine.onnx.writer import to_onnx
    from zoo.engine.onnx.runner import OnnxRunner
    from layers.precision import Precision
    from zoo.engine.networks import define_network

    def define(backend, precision):
        return define_network(model, backend, weights, config, precision)

    scales, _ = quantization.calibrate(define, OnnxBackend(), lambda: [x], model.input_name, "max", 99.99, len(x),
                                       log=lambda m: None)
    net, outputs = define(OnnxBackend(), Precision("int8", scales))
    return OnnxRunner(to_onnx(net, batch=(1, max_batch, max_batch)).SerializeToString(), threads), outputs[0]


def bench_model(name: str, batches: list[int], iterations: int, warmup: int, threads: int) -> list[dict]:
    from zoo.engine.backends import ReferenceBackend
    from zoo.engine.cli import make_parser
    from zoo.engine.onnx.backend import OnnxBackend
    from zoo.engine.onnx.writer import to_onnx
    from zoo.engine.onnx.runner import OnnxRunner
    from zoo.engine.quantization import as_input
    from zoo.engine.networks import define_network, load_weights
    from zoo.engine.timing import median_ms
    from zoo.registry import family

    family_name, flags = MODELS[name]
    model = family(family_name).load()
    args = make_parser(model).parse_args(["validate", *flags])
    weights, config, module = load_weights(model, args)
    module = module.eval()
    net, outputs = define_network(model, OnnxBackend(), weights, config)
    onnx_runner = OnnxRunner(to_onnx(net, batch=(1, max(batches), max(batches))).SerializeToString(), threads)
    reference = ReferenceBackend().runner_for(net)
    try:
        int8, int8_output = int8_runner(model, weights, config, model.sample_input(config, max(batches), 1),
                                        max(batches), threads)
    except Exception as e:  # noqa: BLE001 - a family the INT8 path cannot take yet is a row without INT8
        print(f"{name}: no INT8 ({type(e).__name__}: {str(e)[:120]})", file=sys.stderr)
        int8 = None
    rows = []
    for batch in batches:
        x = model.sample_input(config, batch, 0)
        feed = {model.input_name: x}
        tensor = torch.from_numpy(x)
        got, expected = onnx_runner.run(feed)[outputs[0]], reference.run(feed)[outputs[0]]
        error = (got - expected).abs().max().item() / max(1.0, expected.abs().max().item())
        times = {"reference": median_ms(lambda: reference.run(feed), warmup, iterations),
                 "onnxruntime": median_ms(lambda: onnx_runner.run(feed), warmup, iterations)}
        row = {"model": name, "batch": batch, "error": error, "int8": None, "int8_cosine": None}
        if int8 is not None:
            int8_feed = {model.input_name: as_input(x, "int8")}
            row["int8_cosine"] = cosine(int8.run(int8_feed)[int8_output], got)
            times["int8"] = median_ms(lambda: int8.run(int8_feed), warmup, iterations)
        with torch.inference_mode():
            times["eager"] = median_ms(lambda: module(tensor), warmup, iterations)
        row.update(times)
        rows.append(row)
        print(format_row(row), flush=True)
    return rows


def format_row(r: dict) -> str:
    int8 = (f"{r['int8']:.1f} | {r['int8'] / r['eager']:.2f}x | **{r['int8'] / r['onnxruntime']:.2f}x** | "
            f"{r['int8_cosine']:.4f}") if r.get("int8") else "n/a | | | "
    return (f"| {r['model']} | {r['batch']} | {r['reference']:.1f} | {r['onnxruntime']:.1f} | {r['eager']:.1f} | "
            f"{r['reference'] / r['eager']:.2f}x | **{r['onnxruntime'] / r['eager']:.2f}x** | {int8} | "
            f"{r['error']:.1e} |")


HEADER = ("| model | batch | reference ms | ORT FP32 ms | PyTorch eager ms | reference / eager | ORT FP32 / eager | "
          "ORT INT8 ms | INT8 / eager | INT8 / ORT FP32 | INT8 cosine to FP32 | max rel. diff ORT vs reference |\n"
          "|---|---|---|---|---|---|---|---|---|---|---|---|")


def main(argv: list[str] | None = None) -> int:
    from zoo.engine.onnx.runner import available_cores
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", default="families",
                        help=f"comma-separated, of {sorted(MODELS)}; 'families' (default): the smallest variant "
                             f"of every family")
    parser.add_argument("--batches", default="1", help="comma-separated batch sizes (default 1)")
    parser.add_argument("--iterations", type=int, default=3, help="timed runs per measurement (default 3)")
    parser.add_argument("--warmup", type=int, default=1, help="untimed runs first (default 1)")
    parser.add_argument("--threads", type=int, default=0,
                        help="threads for PyTorch and ONNX Runtime alike (default: the cores available)")
    args = parser.parse_args(argv)
    names = FAMILIES if args.models == "families" else [n for n in args.models.split(",") if n]
    unknown = [n for n in names if n not in MODELS]
    if unknown:
        parser.error(f"unknown model {unknown[0]!r} (known: {sorted(MODELS)})")
    batches = [int(b) for b in args.batches.split(",") if b]
    threads = args.threads or available_cores()
    torch.set_num_threads(threads)
    started = time.perf_counter()
    print(f"threads: PyTorch and ONNX Runtime {threads}; {args.iterations} iterations after {args.warmup} warm-up, "
          f"median ms per batch; load average {os.getloadavg()[0]:.1f}")
    print(HEADER)
    for name in names:
        bench_model(name, batches, args.iterations, args.warmup, threads)
    print(f"({time.perf_counter() - started:.0f} s; load average {os.getloadavg()[0]:.1f} at the end)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
