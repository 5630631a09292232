"""PP-OCR's validation: each network layer by layer against its reference module (zoo.engine.validate), the module
against ONNX Runtime on the original file, and the whole pipeline on rendered scenes against the same pipeline run
by ONNX Runtime on the original files, scored by character error rate against the rendered ground truth."""
from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import torch

from zoo.engine import validate

from .pipeline import IMAGENET, VARIANTS, line_input, normalize, read_page
from .stages import onnx_runtime_stages, stage_files


def edit_distance(a: str, b: str) -> int:
    previous = list(range(len(b) + 1))
    for i, ca in enumerate(a, 1):
        current = [i]
        for j, cb in enumerate(b, 1):
            current.append(min(previous[j] + 1, current[j - 1] + 1, previous[j - 1] + (ca != cb)))
        previous = current
    return previous[-1]


def match_lines(truths: list[dict], lines) -> list[str]:
    """For each ground-truth line, the text read in the box whose centre lies in its plate ('' if none)."""
    found = []
    for truth in truths:
        (x0, y0), (x1, y1) = truth["box"][0], truth["box"][2]
        inside = [line for line in lines if x0 <= line.box[:, 0].mean() <= x1 and y0 <= line.box[:, 1].mean() <= y1]
        found.append(" ".join(line.text for line in inside))
    return found


def character_error_rate(pairs: list[tuple[str, str]]) -> float:
    """Edits over characters of the truth, summed over (read, truth) pairs."""
    return sum(edit_distance(r, t) for r, t in pairs) / max(1, sum(len(t) for _, t in pairs))


def sample_input(stage: str) -> np.ndarray:
    """Inputs from a rendered scene: the page for the detector, its text lines (one upside down) for the others."""
    from .synth import scene
    _, image, truths = scene(1)
    if stage == "det":
        return normalize(cv2.resize(image, (384, 256)), IMAGENET)[None]
    crops = [image[t["box"][0][1]:t["box"][2][1], t["box"][0][0]:t["box"][2][0]] for t in truths]
    shape = (48, 192) if stage == "cls" else (48, 256)
    return np.stack([line_input(c, *shape) for c in crops])


def modules_vs_onnxruntime(variant: str, weights_dir: Path | None, tolerance: float = 1e-4):
    """(table, passed): each stage's reference module, with the weights mapped from its ONNX file, against ONNX
    Runtime running that file, on the same real inputs (stages given as .wts files are skipped)."""
    import onnxruntime as ort
    from .stages import reference_stages
    files = stage_files(variant, weights_dir)[0]
    modules = reference_stages(variant, weights_dir)
    rows = []
    for stage in ("det", "cls", "rec"):
        if files[stage].suffix != ".onnx":
            continue
        x = sample_input(stage)
        session = ort.InferenceSession(str(files[stage]), providers=["CPUExecutionProvider"])
        theirs = session.run(None, {session.get_inputs()[0].name: x})[0]
        ours = getattr(modules, stage)(x)
        rows.append(validate.compare(f"{stage}: reference module vs onnxruntime", torch.from_numpy(ours),
                                     torch.from_numpy(theirs), tolerance))
    return validate.format_table(rows, f"tolerance {tolerance:g}"), all(r.ok for r in rows)


def read_scenes(stages, variant: str, count: int):
    """[(read, truth, upside down)] over the first `count` rendered scenes."""
    from .synth import SCENES, scene
    pairs = []
    for i in range(min(count, len(SCENES))):
        _, image, truths = scene(i)
        lines = read_page(image, stages, VARIANTS[variant])
        pairs += [(read, t["text"], t["upside_down"]) for read, t in zip(match_lines(truths, lines), truths)]
    return pairs


def compare_pipelines(zoo_stages, variant: str, weights_dir: Path | None, scenes: int = 3):
    """(table, passed): CER of the zoo's pipeline and of ONNX Runtime's on the same rendered scenes within one
    point, and at least 95% of lines read the same."""
    ours = read_scenes(zoo_stages, variant, scenes)
    theirs = read_scenes(onnx_runtime_stages(variant, weights_dir), variant, scenes)
    cer_ours = character_error_rate([(r, t) for r, t, _ in ours])
    cer_theirs = character_error_rate([(r, t) for r, t, _ in theirs])
    same = sum(a[0] == b[0] for a, b in zip(ours, theirs)) / max(1, len(ours))
    rows = [f"{'truth':<28} {'zoo':<28} {'onnxruntime':<28}"]
    rows += [f"{t:<28} {r:<28} {o:<28}" for (r, t, _), (o, _, _) in zip(ours, theirs)]
    passed = abs(cer_ours - cer_theirs) <= 0.01 and same >= 0.95
    rows.append(f"pipeline on {scenes} rendered scene(s): character error rate zoo {100 * cer_ours:.2f}%, "
                f"onnxruntime (original files) {100 * cer_theirs:.2f}%; same text on {100 * same:.0f}% of "
                f"{len(ours)} lines: {'ok' if passed else 'FAIL'}")
    return "\n".join(rows), passed
