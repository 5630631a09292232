"""Helpers of the serving tests: engines and `infer`'s own records to compare served answers with."""
from __future__ import annotations

import json
import socket
from pathlib import Path

import numpy as np

from zoo.engine.cli import main
from zoo.registry import family

ROOT = Path(__file__).resolve().parents[1]
IMAGES = ROOT / "tests" / "data" / "images"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def run_cli(name: str, *argv) -> None:
    code = main(family(name).load(), [str(a) for a in argv])
    assert code == 0, f"python -m zoo.{name} {' '.join(map(str, argv))} exited {code}"


def infer_records(name: str, engine: Path, out: Path, backend: str = "auto") -> dict[str, dict]:
    """`infer`'s records for the project's images, by file name: the reference every served answer must equal
    (`backend`: the executor the server runs, as random weights leave detections on a knife's edge)."""
    run_cli(name, "infer", "--engine", engine, "--source", IMAGES, "--out", out, "--backend", backend,
            *(["--no-draw"] if name == "yolov5" else []))
    records = [json.loads(line) for line in (out / "predictions.jsonl").read_text().splitlines()]
    return {Path(r["file"]).name: r for r in records}


def assert_same_record(got: dict, want: dict) -> None:
    """The served record equals infer's (up to the file name): the same detections or top classes.

    The network ran in another batch composition, and CPU convolutions pick their kernels by batch size, so the
    floats differ in the last bits; random YOLOv5n amplifies that (README, Precision). Measured on infer's own
    records, one image alone vs in a batch of six: identical after rounding for five images, and boxes up to
    0.04 px apart on tiny.jpg (upscaled 8x, saturated scores). So detections are matched one to one, same class,
    box within 0.05 px and score within 1e-4, in any order; a pre- or post-processing difference (a letterbox pad,
    a channel order, a threshold) moves boxes by pixels or changes the set."""
    assert set(got) - {"file"} == set(want) - {"file"}, (got.keys(), want.keys())
    if "detections" in want:
        assert len(got["detections"]) == len(want["detections"]), (len(got["detections"]), len(want["detections"]))
        rows = lambda dets: np.array([[*d["box"], d["score"], d["class_id"]] for d in dets]).reshape(-1, 6)
        mine, theirs = rows(got["detections"]), rows(want["detections"])
        free = np.ones(len(theirs), bool)
        for row in mine:
            close = free & (theirs[:, 5] == row[5]) & (np.abs(theirs[:, :4] - row[:4]).max(1) <= 0.05) & \
                (np.abs(theirs[:, 4] - row[4]) <= 1e-4)
            assert close.any(), f"served detection {row.tolist()} is not among infer's"
            free[np.argmax(close)] = False
        names = {d["class_id"]: d["class_name"] for d in want["detections"]}
        assert all(names[d["class_id"]] == d["class_name"] for d in got["detections"])
    if "top" in want:
        assert [t["class_id"] for t in got["top"]] == [t["class_id"] for t in want["top"]]
        for g, w in zip(got["top"], want["top"]):
            assert abs(g["score"] - w["score"]) <= 1e-5, (g, w)
    assert got.get("error") == want.get("error")
