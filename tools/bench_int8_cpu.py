"""INT8 on ONNX Runtime's integer kernels, on the trained classifiers: agreement with FP32 and speed, in one run.

    python -m tools.make_crops --out runs/crops --calib 24 --eval 12       # 216 calibration, 108 held-out crops
    python tools/bench_int8_cpu.py --crops runs/crops [--batch 8] [--iterations 5]

For MobileNetV2 and EfficientNet-Lite0 (trained weights, zoo.assets): activations collected over CROPS/calib by the
FP32 network on ONNX Runtime (what `calibrate` does with --backend auto), percentile 99.99 scales; then over the
held-out crops CROPS/eval, the top-1 agreement with the FP32 network (ONNX Runtime) of the INT8 network executed
by the reference backend (FP16 between Q/DQ, as the README's INT8 study) and by ONNX Runtime (the CPU plan:
QLinearConv on uint8 activations, FP32 between), with the same scales. Speed: FP32 and INT8 on ONNX Runtime at
`--batch`, interleaved, median ms per batch.
"""
from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

if __package__ in (None, ""):
    sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import numpy as np  # noqa: E402
import torch  # noqa: E402


def main(argv=None) -> int:
    from tools.int8_study import MODELS, agreement, batches_of, load_model
    from zoo.engine import quantization
    from zoo.engine.backends import ReferenceBackend
    from zoo.engine.calibration import compute_scales
    from zoo.engine.onnx.backend import OnnxBackend
    from zoo.engine.onnx.writer import to_onnx
    from zoo.engine.onnx.runner import OnnxRunner
    from layers.precision import Precision
    from zoo.engine.quantization import as_input
    from zoo.engine.networks import define_network
    from zoo.engine.timing import median_ms
    from zoo.vision.images import list_images

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--crops", type=Path, default=Path("runs/crops"))
    parser.add_argument("--models", type=lambda t: t.split(","), default=list(MODELS))
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--iterations", type=int, default=5)
    args = parser.parse_args(argv)
    print(f"load average {os.getloadavg()[0]:.1f}")
    print("| model | held-out crops | INT8 reference top-1 agreement | INT8 ORT top-1 agreement | INT8 ORT vs INT8 "
          "reference top-1 | ORT FP32 ms | ORT INT8 ms | INT8 / FP32 |")
    print("|---|---|---|---|---|---|---|---|")
    for name in args.models:
        model, weights, config = load_model(name)
        calib, held_out = list_images(args.crops / "calib"), list_images(args.crops / "eval")

        def define(backend, precision):
            return define_network(model, backend, weights, config, precision)

        collector, _ = quantization.collect(define, OnnxBackend(), lambda: batches_of(model, config, calib, args.batch),
                                            model.input_name, True, args.batch, log=lambda m: None)
        scales = compute_scales(collector, "percentile", 99.99)
        fp32_net, out = define(OnnxBackend(), Precision("fp32"))
        int8_net, out8 = define(OnnxBackend(), Precision("int8", scales))
        batch_range = (1, args.batch, args.batch)
        fp32_ort = OnnxRunner(to_onnx(fp32_net, batch=batch_range).SerializeToString())
        int8_ort = OnnxRunner(to_onnx(int8_net, batch=batch_range).SerializeToString())
        int8_ref = ReferenceBackend().runner_for(int8_net)

        def logits(runner, name_, mode):
            return torch.cat([runner.run({model.input_name: as_input(b, mode)})[name_].float()
                              for b in batches_of(model, config, held_out, args.batch)])

        fp32 = logits(fp32_ort, out[0], "fp32")
        ref8, ort8 = logits(int8_ref, out8[0], "int8"), logits(int8_ort, out8[0], "int8")
        x = next(batches_of(model, config, held_out, args.batch))
        feeds = {"fp32": {model.input_name: x}, "int8": {model.input_name: as_input(x, "int8")}}
        times = {"fp32": [], "int8": []}
        for _ in range(2):  # interleaved: load changes hit both
            times["fp32"].append(median_ms(lambda: fp32_ort.run(feeds["fp32"]), 1, args.iterations))
            times["int8"].append(median_ms(lambda: int8_ort.run(feeds["int8"]), 1, args.iterations))
        fp32_ms, int8_ms = float(np.median(times["fp32"])), float(np.median(times["int8"]))
        both = (ref8.argmax(1) == ort8.argmax(1)).float().mean().item() * 100
        print(f"| {name} | {len(fp32)} | {agreement(fp32, ref8)[0]:.1f}% | {agreement(fp32, ort8)[0]:.1f}% | "
              f"{both:.1f}% | {fp32_ms:.1f} | {int8_ms:.1f} | **{int8_ms / fp32_ms:.2f}x** |", flush=True)
    print(f"load average {os.getloadavg()[0]:.1f} at the end")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
