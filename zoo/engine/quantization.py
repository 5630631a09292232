"""INT8 work that runs networks: calibration over a folder of images, and per-layer sensitivity.

Both run on whichever backend is at hand, through the model's own pre-processing, and use only the network API,
so the same code calibrates on a CPU (reference backend) or a GPU (TensorRT with the observed tensors marked as
outputs). The arithmetic (histograms, entropy, Q/DQ, the cache file) is `calibration.py`.
"""
from __future__ import annotations

import sys
from typing import Callable, Iterable

import numpy as np
import torch

from .backend_api import BuildOptions
from .backends import ReferenceBackend
from .calibration import CalibrationCache, HistogramCollector, compute_scales
from layers.precision import Precision


def as_input(batch, precision: str):
    """The batch in the network input's type: FP16 for fp16 and int8 networks. A list is a pipeline's images: each
    of its stages casts its own input (zoo.engine.pipeline.StageRunner)."""
    if precision == "fp32" or isinstance(batch, list):
        return batch
    return batch.half() if isinstance(batch, torch.Tensor) else np.asarray(batch, np.float16)


def _observed_network(define: Callable, backend, batch_size: int):
    """An FP32 build whose outputs are the inputs of every quantizable op: (runner, {tensor name}, input name)."""
    precision = Precision("fp32")
    net, _ = define(backend, precision)
    wanted = {name for _, name in precision.seen}
    input_names = {net.get_input(i).name for i in range(net.num_inputs)}
    for i in range(net.num_layers):
        layer = net.get_layer(i)
        for j in range(layer.num_outputs):
            if layer.get_output(j).name in wanted:
                net.mark_output(layer.get_output(j))
    if isinstance(backend, ReferenceBackend):
        runner = backend.runner_for(net)
    else:
        runner = backend.load(backend.build(net, BuildOptions(net.get_input(0).name, (1, batch_size, batch_size))))
    return runner, wanted, input_names


def calibrate(define: Callable, backend, batches: Callable[[], Iterable[np.ndarray]], input_name: str,
              method: str, percentile: float, batch_size: int, log=lambda m: print(m, file=sys.stderr)):
    """Scales by tensor name. `define(backend, precision) -> (net, outputs)`; `batches()` yields input batches
    (called once per pass: ranges, then histograms)."""
    collector, count = collect(define, backend, batches, input_name, method != "max", batch_size, log)
    return compute_scales(collector, method, percentile), count


def collect(define: Callable, backend, batches: Callable[[], Iterable[np.ndarray]], input_name: str,
            histograms: bool, batch_size: int, log=lambda m: print(m, file=sys.stderr)):
    """(HistogramCollector, image count) over the calibration batches: ranges, then histograms when asked. One
    collector serves every method (compute_scales), so comparing methods costs one pass, not one each."""
    runner, wanted, input_names = _observed_network(define, backend, batch_size)
    collector = HistogramCollector()
    passes = ("ranges", "histograms") if histograms else ("ranges",)
    count = 0
    for phase in passes:
        if phase == "histograms":
            collector.collect_histograms()
        count = 0
        for index, batch in enumerate(batches(), 1):
            outputs = runner.run({input_name: batch})
            for name in wanted:
                collector.observe(name, batch if name in input_names else outputs[name])
            count += len(batch)
            log(f"calibration {phase}: batch {index}, {count} images")
    return collector, count


def output_snr_db(got: torch.Tensor, ref: torch.Tensor) -> float:
    """Signal-to-noise ratio of `got` against `ref`, in dB."""
    got, ref = got.detach().float().cpu().double(), ref.detach().float().cpu().double()
    noise = ((got - ref) ** 2).sum().item()
    return float("inf") if noise == 0 else 10 * np.log10(max((ref ** 2).sum().item(), 1e-30) / noise)


def sensitivity(define: Callable, scales: dict[str, float], x: np.ndarray, input_name: str,
                reference: torch.Tensor, log=lambda m: print(m, file=sys.stderr)) -> list[tuple[str, float]]:
    """(layer, output SNR in dB) with only that layer quantized, worst first. Runs on the reference backend."""
    backend = ReferenceBackend()
    probe = Precision("fp32")
    define(backend, probe)
    layers = probe.quantizable_layers()
    results = []
    for i, layer in enumerate(layers, 1):
        net, outputs = define(backend, Precision("int8", scales, only=frozenset({layer})))
        got = backend.runner_for(net).run({input_name: as_input(x, "int8")})[outputs[0]]
        results.append((layer, output_snr_db(got, reference)))
        if i % 10 == 0 or i == len(layers):
            log(f"sensitivity: {i}/{len(layers)} layers")
    return sorted(results, key=lambda r: r[1])


def load_cache(path, model: str, variant: str) -> CalibrationCache:
    cache = CalibrationCache.load(path, expect_model=model)
    if cache.variant != variant:
        raise ValueError(f"calibration cache {path} was made for {model} variant '{cache.variant}', not "
                         f"'{variant}'; calibrate again for these weights")
    return cache
