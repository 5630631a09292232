"""Layer-by-layer validation: the zoo's network against its PyTorch reference, tensor by tensor, matched by name.

Every module of the reference gets a forward hook; a module called several times (one MaxPool2d applied thrice)
yields `name`, `name#2`, `name#3`. Every network tensor with one of those names is marked as an output, so the same
path works on both backends. A row passes when max|net - ref| <= tolerance * max(1, max|ref|): absolute for values
of order one, relative for large activations.
"""
from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass

import torch


@dataclass
class LayerReport:
    name: str
    shape: tuple[int, ...]
    max_abs: float
    max_rel: float      # max|net - ref| / max|ref|
    cosine: float
    snr_db: float       # 10 log10(sum ref^2 / sum (net - ref)^2)
    ok: bool


def reference_outputs(module: torch.nn.Module, x: torch.Tensor) -> dict[str, torch.Tensor]:
    """Every module's output on `x`, by module name (with #k for the k-th call of a reused module)."""
    captured: dict[str, torch.Tensor] = {}
    calls: dict[str, int] = defaultdict(int)
    hooks = []
    for name, sub in module.named_modules():
        if not name:
            continue

        def hook(_mod, _inputs, output, name=name):
            calls[name] += 1
            if isinstance(output, tuple) and output and isinstance(output[0], torch.Tensor):
                output = output[0]  # nn.MultiheadAttention returns (output, weights): the output is compared
            if isinstance(output, torch.Tensor):
                key = name if calls[name] == 1 else f"{name}#{calls[name]}"
                captured[key] = output.detach().float().clone()

        hooks.append(sub.register_forward_hook(hook))
    try:
        with torch.no_grad():
            outputs = module(x)
        # a module with several outputs (a segmentation model's boxes and prototypes): __output__, __output__1, ...
        for i, output in enumerate(outputs if isinstance(outputs, (tuple, list)) else [outputs]):
            captured[f"__output__{i or ''}"] = output.detach().float().clone()
    finally:
        for h in hooks:
            h.remove()
    return captured


def mark_comparable(network, names) -> list[str]:
    """Mark every network tensor whose name is in `names` as an output; their names in network order."""
    marked = []
    for i in range(network.num_layers):
        layer = network.get_layer(i)
        for j in range(layer.num_outputs):
            tensor = layer.get_output(j)
            if tensor.name in names and tensor.name not in marked:
                network.mark_output(tensor)
                marked.append(tensor.name)
    return marked


def compare(name: str, net: torch.Tensor, ref: torch.Tensor, tolerance: float,
            min_cosine: float | None = None) -> LayerReport:
    """One row. FP32 passes on the tolerance; FP16/INT8 (given `min_cosine`) on the cosine to FP32."""
    from .quantization import output_snr_db
    net, ref = net.detach().float().cpu(), ref.detach().float().cpu()
    if net.shape != ref.shape:
        return LayerReport(name, tuple(net.shape), float("inf"), float("inf"), float("nan"), float("nan"), False)
    diff = (net - ref).abs().max().item() if net.numel() else 0.0
    scale = ref.abs().max().item() if ref.numel() else 0.0
    cosine = torch.nn.functional.cosine_similarity(net.flatten().double(), ref.flatten().double(), dim=0).item() \
        if net.numel() else 1.0
    ok = diff <= tolerance * max(1.0, scale) if min_cosine is None else cosine >= min_cosine
    return LayerReport(name, tuple(net.shape), diff, diff / scale if scale else diff, cosine,
                       output_snr_db(net, ref), ok)


def format_table(rows: list[LayerReport], criterion: str) -> str:
    first_bad = next((r.name for r in rows if not r.ok), None)
    width = max([len(r.name) for r in rows] + [5])
    lines = [f"{'layer':<{width}}  {'shape':<20} {'max abs':>10} {'max rel':>10} {'cosine':>10} {'SNR dB':>7}  "
             f"status"]
    for r in rows:
        status = "ok" if r.ok else ("FIRST OVER TOLERANCE" if r.name == first_bad else "over")
        lines.append(f"{r.name:<{width}}  {str(list(r.shape)):<20} {r.max_abs:10.3e} {r.max_rel:10.3e} "
                     f"{r.cosine:10.6f} {r.snr_db:7.1f}  {status}")
    bad = sum(not r.ok for r in rows)
    verdict = (f"all {len(rows)} layers pass ({criterion})" if not bad else
               f"{bad} of {len(rows)} layers fail ({criterion}); first: {first_bad}")
    return "\n".join(lines + [verdict])
