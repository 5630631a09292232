"""What MTCNN's `validate` adds to the shared per-layer tables: the real inputs each network is compared on, and the
zoo's cascade against the pure PyTorch cascade (torch_cascade.py) on real photos."""
from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np
import torch

from .cascade import Cascade, CascadeParams, pyramid_scales
from .nets import CROP_SIZE
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
