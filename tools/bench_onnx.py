"""ONNX Runtime vs the reference backend vs PyTorch eager, on the CPU, in one run.

    python tools/bench_onnx.py [--models resnet50,yolov5s] [--batches 1,8] [--iterations 10] [--warmup 2] [--threads N]

For each model and batch: the same seeded random weights, the same input; the network defined once by the model's
builder, run by the reference backend (as `build`/`infer` run it) and, written as ONNX by the zoo's writer, by ONNX
Runtime (CPU provider, default threads, graph optimizations on); the PyTorch reference module run eagerly under
inference_mode. Median milliseconds per batch; ratios against PyTorch eager measured in the same run. The outputs
of the two backends are compared too, so a fast wrong answer cannot pass unnoticed. `--threads N` gives PyTorch (eager
and the reference backend) and ONNX Runtime the same number of threads; on a shared machine, 1 thread keeps the
ratios stable (thread pools that wait on each other suffer most from other people's load).
"""
from __future__ import annotations

import argparse
import os
import sys

if __package__ in (None, ""):  # run as a script: make the repository importable
    sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import torch  # noqa: E402

MODELS = {  # name: (family, flags of `validate` that select the variant and input)
    "resnet50": ("resnet", ["--depth", "50", "--input-size", "224"]),
    "yolov5s": ("yolov5", ["--variant", "s", "--input-size", "640"]),
    "resnet18": ("resnet", ["--depth", "18", "--input-size", "224"]),
    "yolov5n": ("yolov5", ["--variant", "n", "--input-size", "640"]),
}


def bench_model(name: str, batches: list[int], iterations: int, warmup: int, threads: int) -> list[dict]:
    from zoo.engine.backends import ReferenceBackend
    from zoo.engine.cli import make_parser
    from zoo.engine.onnx.backend import OnnxBackend
    from zoo.engine.onnx.writer import to_onnx
    from zoo.engine.onnx.runner import OnnxRunner
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
    rows = []
    for batch in batches:
        x = model.sample_input(config, batch, 0)
        feed = {model.input_name: x}
        tensor = torch.from_numpy(x)
        got, expected = onnx_runner.run(feed)[outputs[0]], reference.run(feed)[outputs[0]]
        error = (got - expected).abs().max().item() / max(1.0, expected.abs().max().item())
        times = {"onnxruntime": median_ms(lambda: onnx_runner.run(feed), warmup, iterations),
                 "reference": median_ms(lambda: reference.run(feed), warmup, iterations)}
        with torch.inference_mode():
            times["eager"] = median_ms(lambda: module(tensor), warmup, iterations)
        rows.append({"model": name, "batch": batch, **times, "error": error})
        print(format_row(rows[-1]), flush=True)
    return rows


def format_row(r: dict) -> str:
    return (f"| {r['model']} | {r['batch']} | {r['onnxruntime']:.1f} | {r['reference']:.1f} | {r['eager']:.1f} | "
            f"**{r['onnxruntime'] / r['eager']:.2f}x** | {r['reference'] / r['eager']:.2f}x | {r['error']:.1e} |")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", default="resnet50,yolov5s", help=f"comma-separated, of {sorted(MODELS)}")
    parser.add_argument("--batches", default="1,8", help="comma-separated batch sizes (default 1,8)")
    parser.add_argument("--iterations", type=int, default=10, help="timed runs per measurement (default 10)")
    parser.add_argument("--warmup", type=int, default=2, help="untimed runs first (default 2)")
    parser.add_argument("--threads", type=int, default=0,
                        help="threads for PyTorch and ONNX Runtime alike (default: each library's own default)")
    args = parser.parse_args(argv)
    names = [n for n in args.models.split(",") if n]
    unknown = [n for n in names if n not in MODELS]
    if unknown:
        parser.error(f"unknown model {unknown[0]!r} (known: {sorted(MODELS)})")
    batches = [int(b) for b in args.batches.split(",") if b]
    if args.threads:
        torch.set_num_threads(args.threads)
    print(f"threads: PyTorch {torch.get_num_threads()}, ONNX Runtime {args.threads or 'default'}; "
          f"{args.iterations} iterations, median ms per batch")
    print("| model | batch | ONNX Runtime ms | reference ms | PyTorch eager ms | ONNX Runtime / eager | "
          "reference / eager | max rel. diff ORT vs reference |")
    print("|---|---|---|---|---|---|---|---|")
    for name in names:
        bench_model(name, batches, args.iterations, args.warmup, args.threads)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
