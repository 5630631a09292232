"""INT8 calibration methods measured on the trained classifiers: which method should the zoo default to?

    python -m tools.make_crops --out runs/crops --calib 8 --eval 3
    python -m tools.int8_study --crops runs/crops --auto-keep 5 --out runs/int8_study.md

For each trained network (MobileNetV2, EfficientNet-Lite0; zoo.assets), the FP32 zoo network's activations are
collected once over `CROPS/calib` (ranges, then histograms), and scales computed for entropy (TensorRT's KL search),
percentile (99.99) and max. Each INT8 network (explicit Q/DQ on the reference backend, which executes them exactly)
is then run on the held-out crops `CROPS/eval` and compared with the FP32 zoo network:

- top-1 agreement: share of crops whose INT8 top-1 class is the FP32 top-1;
- top-5 overlap: mean share of the FP32 top-5 classes found in the INT8 top-5;
- output SNR: 10 log10(sum fp32^2 / sum (int8 - fp32)^2) over all logits of all held-out crops;
- per-layer cosine: every named tensor of the INT8 network against the PyTorch reference module (validate's
  matching by name) on the first four held-out crops; the worst layer and the median.

With `--auto-keep K`, the method with the best output SNR (every method with `--auto-keep-all`) is measured again
with the K layers whose quantization alone costs the most output SNR (ranked on one calibration crop) left in FP16,
as `build --auto-keep K` does. The ranking runs the INT8 network once per layer, hence the default.
"""
from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

import numpy as np
import torch

from wts.weight_map import WeightMap
from zoo.assets import asset_path
from zoo.engine import quantization
from zoo.engine import validate as validation
from zoo.engine.backends import ReferenceBackend
from zoo.engine.calibration import QMAX, compute_scales, entropy_threshold, max_threshold
from zoo.engine.checkpoint import load_state_dict
from zoo.engine.model import load_state_into
from layers.precision import Precision
from zoo.engine.quantization import as_input, output_snr_db
from zoo.engine.networks import define_network
from zoo.vision.images import list_images

MODELS = {"mobilenet_v2": "zoo.mobilenet.model:MobileNetModel",
          "efficientnet_lite0": "zoo.efficientnet.model:EfficientNetModel"}
METHODS = ("entropy", "percentile", "max")
STUDY_METHODS = METHODS + ("entropy-nonzero",)


def scales_for(collector, method: str, percentile: float) -> dict[str, float]:
    """The zoo's scales for `method`; "entropy-nonzero" is the entropy search with the zero bin's count replaced
    by its neighbour's (what NVIDIA's pytorch-quantization does), so that the zeros of ReLU/ReLU6 outputs do not
    pull the threshold down: measured here, not a zoo method."""
    if method != "entropy-nonzero":
        return compute_scales(collector, method, percentile)
    scales = {}
    for name in collector.names:
        counts, width = collector.histogram(name)
        if collector.amax(name) == 0.0 or counts[1:].sum() == 0:
            scales[name] = compute_scales_one(collector.amax(name))
            continue
        counts[0] = counts[1]
        scales[name] = float(np.float32(entropy_threshold(counts, width) / QMAX))
    return scales


def compute_scales_one(amax: float) -> float:
    return float(np.float32(max_threshold(amax) / QMAX))


def say(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def load_model(name: str):
    import importlib
    module, _, cls = MODELS[name].partition(":")
    model = getattr(importlib.import_module(module), cls)()
    weights = WeightMap(load_state_dict(asset_path(name)).tensors, name)
    config = model.config_from_weights(weights, argparse.Namespace(variant=None, num_classes=1000, input_size=None
                                                                   if name == "efficientnet_lite0" else 224))
    return model, weights, config


def batches_of(model, config, paths, size):
    for start in range(0, len(paths), size):
        batch, _ = model.load_batch(paths[start:start + size], config)
        if len(batch):
            yield batch


def logits(model, weights, config, precision: Precision, batches) -> torch.Tensor:
    backend = ReferenceBackend()
    net, outputs = define_network(model, backend, weights, config, precision)
    runner = backend.runner_for(net)
    return torch.cat([runner.run({model.input_name: as_input(b, precision.mode)})[outputs[0]].float()
                      for b in batches])


def layer_cosines(model, weights, config, precision: Precision, x: np.ndarray) -> list[tuple[str, float]]:
    """(tensor name, cosine to the PyTorch FP32 reference) for every tensor validate would compare."""
    reference = load_state_into(model.reference_module(config), WeightMap(weights.arrays(), weights.source))
    expected = validation.reference_outputs(reference, torch.from_numpy(x))
    backend = ReferenceBackend()
    net, _ = define_network(model, backend, weights, config, precision)
    names = validation.mark_comparable(net, set(expected))
    got = backend.runner_for(net).run({model.input_name: as_input(x, precision.mode)})
    return [(n, validation.compare(n, got[n], expected[n], 1e-4, 0.0).cosine) for n in names]


def agreement(fp32: torch.Tensor, low: torch.Tensor) -> tuple[float, float, float]:
    """(top-1 agreement %, top-5 overlap %, output SNR dB)."""
    top1 = (fp32.argmax(1) == low.argmax(1)).float().mean().item()
    ref5, low5 = fp32.topk(5, 1).indices, low.topk(5, 1).indices
    overlap = np.mean([len(set(a.tolist()) & set(b.tolist())) / 5 for a, b in zip(ref5, low5)])
    return 100 * top1, 100 * float(overlap), output_snr_db(low, fp32)


def study(name: str, args) -> list[str]:
    model, weights, config = load_model(name)
    calib = list_images(args.crops / "calib")[:args.calib_max or None]
    held_out = list_images(args.crops / "eval")[:args.eval_max or None]
    say(f"{name}: {len(calib)} calibration crops, {len(held_out)} held-out crops")
    started = time.perf_counter()
    collector, count = quantization.collect(lambda b, p: define_network(model, b, weights, config, p),
                                            ReferenceBackend(), lambda: batches_of(model, config, calib, args.batch),
                                            model.input_name, True, args.batch, log=lambda m: None)
    say(f"{name}: activations of {count} crops collected in {time.perf_counter() - started:.0f} s")
    fp32 = logits(model, weights, config, Precision("fp32"), batches_of(model, config, held_out, args.batch))
    first = next(batches_of(model, config, held_out, 4))
    probe = next(batches_of(model, config, calib[len(calib) // 2:][:1], 1))
    probe_ref = logits(model, weights, config, Precision("fp32"), [probe])
    rows, snrs = [], {}

    def measure(method: str, keep: frozenset) -> None:
        scales = scales_of[method]
        t = time.perf_counter()
        low = logits(model, weights, config, Precision("int8", scales, keep),
                     batches_of(model, config, held_out, args.batch))
        top1, top5, snr = agreement(fp32, low)
        cosines = layer_cosines(model, weights, config, Precision("int8", scales, keep), first)
        worst = min(cosines, key=lambda c: c[1])
        median = statistics.median(c for _, c in cosines)
        label = method + (f" {args.percentile:g}" if method == "percentile" else "")
        rows.append(f"| {name} | {label} | {len(keep) or '-'} | {top1:.1f}% | {top5:.1f}% | {snr:.1f} dB | "
                    f"{worst[1]:.4f} ({worst[0]}) | {median:.5f} |")
        say(rows[-1] + f"  [{time.perf_counter() - t:.0f} s]")
        snrs[method] = snrs.get(method, snr)

    scales_of = {method: scales_for(collector, method, args.percentile) for method in args.methods}
    for method in args.methods:
        measure(method, frozenset())
    if args.auto_keep:  # the sensitivity pass costs one INT8 run per layer: by default only for the best method
        for method in (args.methods if args.auto_keep_all else [max(snrs, key=snrs.get)]):
            ranking = quantization.sensitivity(lambda b, p: define_network(model, b, weights, config, p),
                                               scales_of[method], probe, model.input_name, probe_ref,
                                               log=lambda m: None)
            keep = frozenset(layer for layer, _ in ranking[:args.auto_keep])
            say(f"  {method}: --auto-keep {args.auto_keep} keeps in FP16 {sorted(keep)}")
            measure(method, keep)
    return rows


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--crops", type=Path, default=Path("runs/crops"),
                        help="folder with calib/ and eval/ (tools/make_crops.py)")
    parser.add_argument("--models", type=lambda t: t.split(","), default=list(MODELS),
                        help=f"comma-separated, of {', '.join(MODELS)}")
    parser.add_argument("--methods", type=lambda t: t.split(","), default=list(METHODS),
                        help=f"comma-separated, of {', '.join(STUDY_METHODS)} (default: the zoo's three)")
    parser.add_argument("--percentile", type=float, default=99.99)
    parser.add_argument("--auto-keep", type=int, default=5, help="also measure with K layers kept in FP16 (0: no)")
    parser.add_argument("--auto-keep-all", action="store_true",
                        help="rank layers for every method (default: only for the method with the best output SNR)")
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--calib-max", type=int, default=0, help="use at most this many calibration crops")
    parser.add_argument("--eval-max", type=int, default=0, help="use at most this many held-out crops")
    parser.add_argument("--out", type=Path, help="also write the table (markdown) here")
    args = parser.parse_args(argv)
    head = ["| model | method | kept FP16 | top-1 agreement | top-5 overlap | output SNR | worst layer cosine | "
            "median layer cosine |", "|---|---|---|---|---|---|---|---|"]
    rows = []
    for name in args.models:
        rows += study(name, args)
    table = "\n".join(head + rows)
    print(table)
    if args.out:
        from zoo.engine.files import write_text_atomic
        write_text_atomic(args.out, table + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
