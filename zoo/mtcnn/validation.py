"""What `validate` and `bench` measure: each network layer by layer against its PyTorch module, and the zoo's
cascade against the pure PyTorch cascade (torch_cascade.py) on real photos."""
from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np
import torch

from zoo.engine import validate as validation
from zoo.engine.backends import BuildOptions, ReferenceBackend
from zoo.engine.workflow import define_network

from .cascade import Cascade, CascadeParams, pyramid_scales
from .model import MTCNNModel, load_stage_weights, reference_network
from .nets import CROP_SIZE, STAGES
from .resample import AreaSampler
from .torch_cascade import detect_faces


def validation_input(stage: str, seed: int = 0) -> np.ndarray:
    """A real input for each network, from the astronaut photo: P-Net gets the third pyramid level (155x155, odd,
    so that the ceil-mode pooling's last partial window matters); R-Net and O-Net get 8 crops, one on the face."""
    from zoo.assets import asset_path
    image = cv2.cvtColor(cv2.imread(str(asset_path("astronaut"))), cv2.COLOR_BGR2RGB)
    sampler = AreaSampler(torch.from_numpy(image))
    h, w = image.shape[:2]
    if stage == "pnet":
        scale = pyramid_scales(h, w, 20, 0.709)[2]
        return sampler.level(int(h * scale + 1), int(w * scale + 1)).numpy()
    rng = np.random.default_rng(seed)
    sides = rng.integers(24, 200, 7)
    tops, lefts = rng.integers(0, h - sides), rng.integers(0, w - sides)
    regions = [[61, 173, 179, 267]] + [[t, t + s, x, x + s] for t, x, s in zip(tops, lefts, sides)]
    return sampler.crops(torch.tensor(regions), CROP_SIZE[stage], CROP_SIZE[stage]).numpy()


def _runner(backend, net, input_name: str, x: np.ndarray):
    if isinstance(backend, ReferenceBackend):
        return backend.runner_for(net)
    shape = tuple(x.shape)
    return backend.load(backend.build(net, BuildOptions(input_name, (len(x),) * 3, allow_tf32=False,
                                                        shapes={input_name: (shape, shape, shape)})))


def validate_network(stage: str, weights_dir: Path | None, backend, tolerance: float = 1e-4):
    """(table, all layers pass) for one network, every named tensor against the module's forward hooks."""
    model = MTCNNModel()
    weights, config = load_stage_weights(model, weights_dir, stage)
    module = reference_network(model, weights, config)
    x = validation_input(stage)
    expected = validation.reference_outputs(module, torch.from_numpy(x))
    net, outputs = define_network(model, backend, weights, config)
    compared = validation.mark_comparable(net, set(expected))
    got = _runner(backend, net, model.input_name, x).run({model.input_name: x})
    rows = [validation.compare(name, got[name], expected[name], tolerance) for name in compared]
    return validation.format_table(rows, f"tolerance {tolerance:g}, input {list(x.shape)}"), all(r.ok for r in rows)


def validate_networks(weights_dir: Path | None, backend, tolerance: float = 1e-4):
    for stage in STAGES:
        table, ok = validate_network(stage, weights_dir, backend, tolerance)
        yield stage, table, ok


def torch_networks(weights_dir: Path | None) -> dict[str, torch.nn.Module]:
    model = MTCNNModel()
    return {stage: reference_network(model, *load_stage_weights(model, weights_dir, stage)) for stage in STAGES}


# ----------------------------------------------------------------------------------------------------------------
# the cascade against the pure PyTorch cascade


@dataclass
class CascadeRow:
    photo: str
    zoo_faces: int
    torch_faces: int
    box_diff: float        # max |corner difference| over matched faces, pixels
    landmark_diff: float   # max |landmark difference|, pixels
    score_diff: float
    best_score: float      # the zoo's highest face probability (nan without faces)
    ok: bool


def compare_cascades(cascade: Cascade, torch_nets: dict, photos, params: CascadeParams,
                     box_tolerance: float) -> list[CascadeRow]:
    rows = []
    for name, path in photos:
        image = cv2.imread(str(path))
        if image is None:
            continue
        image = cv2.cvtColor(image, cv2.COLOR_BGR2RGB)
        faces = cascade.detect(image)
        boxes, scores, marks = detect_faces(image, torch_nets["pnet"], torch_nets["rnet"], torch_nets["onet"],
                                            params.min_face, params.factor, params.thresholds)
        zb, zs, zl = (faces.boxes.cpu().numpy(), faces.scores.cpu().numpy(), faces.landmarks.cpu().numpy())
        same = len(zs) == len(scores)
        box = mark = score = 0.0
        if same and len(zs):  # both in descending score order
            zo, to = np.argsort(-zs, kind="stable"), np.argsort(-scores, kind="stable")
            box = float(np.abs(zb[zo] - boxes[to]).max())
            mark = float(np.abs(zl[zo] - marks[to]).max())
            score = float(np.abs(zs[zo] - scores[to]).max())
        best = float(zs.max()) if len(zs) else float("nan")
        rows.append(CascadeRow(name, len(zs), len(scores), box, mark, score, best,
                               same and box <= box_tolerance and mark <= box_tolerance))
    return rows


def format_cascade_rows(rows: list[CascadeRow], box_tolerance: float) -> str:
    lines = ["cascade vs the pure PyTorch cascade",
             f"{'photo':<16} {'faces':>5} {'torch':>5} {'best p':>8} {'box px':>8} {'marks px':>9} {'score':>9}  "
             f"status"]
    for r in rows:
        lines.append(f"{r.photo:<16} {r.zoo_faces:5d} {r.torch_faces:5d} {r.best_score:8.5f} {r.box_diff:8.3f} "
                     f"{r.landmark_diff:9.3f} {r.score_diff:9.2e}  {'ok' if r.ok else 'DIFFERS'}")
    bad = [r.photo for r in rows if not r.ok]
    lines.append(f"all {len(rows)} photos agree (same faces, boxes and landmarks within {box_tolerance:g} px)"
                 if not bad else f"{len(bad)} of {len(rows)} photos differ: {', '.join(bad)}")
    return "\n".join(lines)


def bench_cascades(cascade: Cascade, torch_nets: dict | None, photos, params: CascadeParams, warmup: int,
                   iterations: int) -> str:
    """Milliseconds per photo for each stage of the zoo's cascade and, given its networks, the PyTorch one."""
    images = [cv2.cvtColor(im, cv2.COLOR_BGR2RGB) for im in (cv2.imread(str(p)) for _, p in photos)
              if im is not None]
    stages = ("pnet", "rnet", "onet", "nms")

    def zoo_pass():
        for image in images:
            cascade.detect(image)

    def torch_pass(times):
        for image in images:
            detect_faces(image, torch_nets["pnet"], torch_nets["rnet"], torch_nets["onet"], params.min_face,
                         params.factor, params.thresholds, times)

    rows = {}
    for _ in range(warmup):
        zoo_pass()
    cascade.times.seconds = dict.fromkeys(stages, 0.0)
    start = time.perf_counter()
    for _ in range(iterations):
        zoo_pass()
    total = time.perf_counter() - start
    rows["zoo cascade"] = ({s: cascade.times.seconds[s] for s in stages}, total)
    if torch_nets is not None:
        for _ in range(warmup):
            torch_pass({})
        times: dict = {}
        start = time.perf_counter()
        for _ in range(iterations):
            torch_pass(times)
        rows["PyTorch cascade"] = ({s: times.get(s, 0.0) for s in stages}, time.perf_counter() - start)
    per = 1000.0 / (len(images) * iterations)
    lines = [f"MTCNN, {len(images)} photos x {iterations} passes: ms per photo",
             f"{'':18} {'pyramid+P-Net':>13} {'R-Net':>8} {'O-Net':>8} {'NMS':>8} {'total':>8}"]
    for name, (t, whole) in rows.items():
        lines.append(f"{name:18} {t['pnet'] * per:13.2f} {t['rnet'] * per:8.2f} {t['onet'] * per:8.2f} "
                     f"{t['nms'] * per:8.2f} {whole * per:8.2f}")
    if len(rows) == 2:
        (mine, mine_total), (theirs, theirs_total) = rows.values()
        ratios = [f"{s} {mine[s] / theirs[s]:.2f}" for s in stages if theirs[s] > 0]
        lines.append(f"ratio zoo / PyTorch: {', '.join(ratios)}, total {mine_total / theirs_total:.2f}")
    return "\n".join(lines)
