"""One engine, the model's own pre- and post-processing: uploaded bytes in, `infer`'s records out."""
from __future__ import annotations

import argparse
import base64
import threading
import time
from dataclasses import dataclass, field
from typing import Any

import cv2
import numpy as np

from zoo.engine.quantization import as_input
from zoo.engine.errors import UserError, cut
from zoo.engine.onnx.runner import session_threads
from zoo.vision.draw import draw_record

TRUE, FALSE = ("1", "true", "yes", "on"), ("0", "false", "no", "off")
NOT_QUERY = ("out", "no_draw", "help")  # infer flags that are about files, not about one request's answer


@dataclass
class Answer:
    """One item's record, and the seconds of each stage of the batch it ran in (shared by that batch)."""
    record: dict
    timings: dict = field(default_factory=dict)


@dataclass
class Ran:
    """One item after its batch's network: its slice of the outputs, its context and options; `finish` makes its
    record."""
    outputs: dict
    context: Any
    options: argparse.Namespace
    timings: dict


class Predictor:
    """Runs a batch of decoded images through the engine; each item gets the record `infer` would write."""

    def __init__(self, model, header, runner, infer_parser: argparse.ArgumentParser,
                 serve_args: argparse.Namespace | None = None):
        self.model, self.header, self.runner = model, header, runner
        # infer's own flags: their defaults are the service's, their types check a request's values (one
        # definition of each range, shared with the command line). `serve`'s own flags come along, for the checks
        # that compare a threshold with how the model was built (MTCNN's --min-face).
        self.flags = {a.dest: a for a in infer_parser._actions if a.option_strings and a.dest not in NOT_QUERY}
        self.defaults = argparse.Namespace(**{**vars(serve_args or argparse.Namespace()),
                                              **vars(infer_parser.parse_args([]))})
        self.max_batch = header.batch[2]
        self.finishing = threading.BoundedSemaphore(session_threads())

    def options(self, query: dict) -> argparse.Namespace:
        """The request's thresholds: infer's flags (conf, iou, max_det, agnostic, classes) from the query string,
        checked with the flags' own types and ranges. Raises ValueError, one line naming the parameter, the value
        and what is allowed."""
        args = argparse.Namespace(**vars(self.defaults))
        for key, text in query.items():
            action = self.flags.get(key.replace("-", "_"))
            if action is None:
                known = ", ".join(self.flags)
                raise ValueError(f"unknown query parameter {cut(key, 40)!r} (thresholds: {known}; also name, "
                                 f"annotate)")
            try:
                setattr(args, action.dest, _parse(action, text))
            except (argparse.ArgumentTypeError, ValueError, TypeError) as e:
                raise ValueError(f"query parameter {key}: {e}") from None
        try:
            self.model.check_infer_arguments(args, self.header.config)
        except UserError as e:  # the flag's message ("--classes: 999 is out of range ...") for the parameter
            raise ValueError(f"query parameter {str(e).removeprefix('--')}") from None
        return args

    def run_batch(self, items: list[tuple[str, np.ndarray, argparse.Namespace]]) -> list[Ran]:
        """items: (name, BGR image, options). Pre-processing and one engine call for all. The batcher's thread
        runs this, so it holds nothing else: each item's post-processing (`finish`) runs in its own request's
        thread, beside the next batch's network."""
        clock = time.perf_counter
        started = clock()
        batch, contexts = self.model.load_images([(name, image, None) for name, image, _ in items],
                                                 self.header.config, self.runner.device)
        preprocessed = clock()
        outputs = self.runner.run({self.header.input_name: as_input(batch, self.header.precision)})
        ran = clock()
        timings = {"started": started, "batch_size": len(items), "preprocess": preprocessed - started,
                   "network": ran - preprocessed}
        return [Ran({name: value[i:i + 1] for name, value in outputs.items()}, context, options, timings)
                for i, (context, (_, _, options)) in enumerate(zip(contexts, items))]

    def finish(self, ran: Ran) -> Answer:
        """The item's record (NMS, masks, ...), at most one item per core at a time: more would only contend."""
        with self.finishing:
            start = time.perf_counter()
            record = self.model.records(ran.outputs, [ran.context], self.header.config, ran.options)[0]
            return Answer(record, {**ran.timings, "postprocess": time.perf_counter() - start})


def _parse(action: argparse.Action, text: str):
    """A query value through its infer flag: the flag's type (and range), a list for nargs='+', a switch."""
    if action.nargs == 0:  # store_true
        if text.lower() not in TRUE + FALSE:
            raise ValueError(f"{cut(text, 40)!r} is not a switch (allowed: {'/'.join(TRUE + FALSE)})")
        return text.lower() in TRUE
    convert = action.type or str
    if action.nargs in ("+", "*"):
        values = [convert(v) for v in text.split(",") if v.strip()]
        if not values and action.nargs == "+":
            raise ValueError("empty list (give values separated by commas)")
    else:
        values = convert(text)
    for value in values if isinstance(values, list) else [values]:
        if action.choices is not None and value not in action.choices:
            raise ValueError(f"{cut(text, 40)!r} is not one of {', '.join(map(str, action.choices))}")
    return values


def annotated_jpeg(image: np.ndarray, record: dict) -> str:
    """The image with what the record holds drawn on it, as a base64 JPEG data URL for the upload page."""
    ok, encoded = cv2.imencode(".jpg", draw_record(image, record), [cv2.IMWRITE_JPEG_QUALITY, 90])
    if not ok:
        raise RuntimeError("cannot encode the annotated image")
    return "data:image/jpeg;base64," + base64.b64encode(encoded.tobytes()).decode()
