"""`bench`: time the network, or each stage of the pipeline over a folder, against PyTorch eager in the same run."""
from __future__ import annotations

from pathlib import Path

import torch

from ..engine_file import EngineHeader
from ..progress import Progress
from ..quantization import as_input
from ..engines import engine_runner, reference_for
from ..errors import UserError
from ..flags import add_common_flags, non_negative_int, positive_int
from ..timing import median_ms

BACKEND_LABELS = {"reference": "reference backend", "tensorrt": "TensorRT", "onnx": "ONNX Runtime"}
HELP = "time the network (and, with --compare-torch, PyTorch eager)"


def add_arguments(parser, model) -> None:
    add_common_flags(parser, model)
    parser.add_argument("--engine", "-e", type=Path, help="engine to time (otherwise built in memory)")
    parser.add_argument("--batch", type=positive_int, default=1, help="batch size (default 1)")
    parser.add_argument("--iterations", type=positive_int, default=20, help="timed runs (default 20)")
    parser.add_argument("--warmup", type=non_negative_int, default=3, help="untimed runs first (default 3)")
    parser.add_argument("--compare-torch", action="store_true",
                        help="also time the PyTorch reference eagerly on the same input, same run")
    parser.add_argument("--source", type=Path,
                        help="detectors: time each stage (pre-process, network, NMS) over this image folder")


def run(model, args) -> int:
    header, runner = engine_runner(model, args)
    if args.source:
        return bench_pipeline(model, header, runner, args)
    x = model.sample_input(header.config, args.batch, args.seed)
    feed = {header.input_name: as_input(x, header.precision)}
    label = BACKEND_LABELS.get(getattr(runner, "backend_name", None) or header.backend, header.backend)
    network_ms = timed(label, lambda: runner.run(feed), args.warmup, args.iterations)
    print(f"{model.name} {header.variant} batch {args.batch}: {label} {network_ms:.2f} ms/iter, "
          f"{1000 * args.batch / network_ms:.1f} items/s")
    if args.compare_torch:  # on the engine's device: GPU against GPU, CPU against CPU
        device = runner.device
        reference = reference_for(model, args, device)
        tensor = x if isinstance(x, list) else torch.from_numpy(x).to(device)  # a list: a pipeline's images
        sync = torch.cuda.synchronize if device == "cuda" else (lambda: None)

        def eager():
            reference(tensor)
            sync()  # CUDA launches are asynchronous: time the work, not the launch

        with torch.inference_mode():
            torch_ms = timed("PyTorch eager", eager, args.warmup, args.iterations)
        print(f"{model.name} {header.variant} batch {args.batch}: PyTorch eager ({device}) {torch_ms:.2f} ms/iter; "
              f"ratio {label} / PyTorch = {network_ms / torch_ms:.2f}")
    return 0


def timed(label: str, run, warmup: int, iterations: int) -> float:
    """median_ms with a progress bar (rate and time left) over the warm-up and timed runs."""
    with Progress(warmup + iterations, f"bench {label}", unit="run") as bar:
        def step():
            run()
            bar.update(1)
        return median_ms(step, warmup, iterations)


def bench_pipeline(model, header: EngineHeader, runner, args) -> int:
    """Per-stage times over a folder, for the engine and (with --compare-torch) the PyTorch reference."""
    from zoo.vision.images import list_images, read_image
    images = [im for im in (read_image(p) for p in list_images(args.source)) if im is not None]
    device = runner.device
    label = BACKEND_LABELS.get(getattr(runner, "backend_name", None) or header.backend, header.backend)
    rows = {label: model.bench_stages(lambda b: runner.run({header.input_name: as_input(b, header.precision)}),
                                      images, header.config, args, device)}
    if rows[label] is None:
        raise UserError(f"{model.name} has no per-stage benchmark; run bench without --source")
    if args.compare_torch:
        reference = reference_for(model, args, device)

        def eager(batch):  # a module with several outputs (boxes, prototypes) maps them to the engine's names
            with torch.inference_mode():
                out = reference(torch.as_tensor(batch, device=device))
            return dict(zip(header.outputs, out if isinstance(out, (tuple, list)) else [out]))

        rows[f"PyTorch eager ({device})"] = model.bench_stages(eager, images, header.config, args, device)
    print(f"{model.name} {header.variant}, {len(images)} images, batch {args.batch}: ms per image")
    stages = list(next(iter(rows.values())))  # preprocess, network, nms (, masks), total
    print(f"{'':24} " + " ".join(f"{s:>11}" for s in stages) + f" {'images/s':>9}")
    for name, t in rows.items():
        print(f"{name:24} " + " ".join(f"{t[s]:11.2f}" for s in stages) + f" {1000 / t['total']:9.1f}")
    if len(rows) == 2:
        mine, theirs = rows.values()
        print("ratio (" + label + " / PyTorch): " + ", ".join(f"{k} {mine[k] / theirs[k]:.2f}" for k in mine))
    return 0
