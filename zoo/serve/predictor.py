"""One engine, the model's own pre- and post-processing: uploaded bytes in, `infer`'s records out."""
from __future__ import annotations

import argparse
import base64

import cv2
import numpy as np

from zoo.engine.quantization import as_input
from zoo.vision.draw import draw_record


class Predictor:
    """Runs a batch of decoded images through the engine; each item gets the record `infer` would write."""

    def __init__(self, model, header, runner, defaults: argparse.Namespace):
        self.model, self.header, self.runner = model, header, runner
        self.defaults = defaults  # infer's flags at their defaults (thresholds); a request may override some
        self.max_batch = header.batch[2]

    def options(self, query: dict) -> argparse.Namespace:
        """The request's thresholds: infer's flags (conf, iou, max_det, agnostic, classes) from the query string.
        Raises ValueError naming the flag for a bad value."""
        args = argparse.Namespace(**vars(self.defaults))
        for key, text in query.items():
            name = key.replace("-", "_")
            if name in ("out", "no_draw") or not hasattr(args, name):
                known = ", ".join(k for k in vars(self.defaults) if k != "no_draw")
                raise ValueError(f"unknown query parameter {key!r} (thresholds: {known}; also name, annotate)")
            default = getattr(self.defaults, name)
            try:
                if name == "classes":
                    value = [int(v) for v in text.split(",") if v != ""]
                elif isinstance(default, bool):
                    value = text.lower() in ("1", "true", "yes", "on")
                else:
                    value = type(default)(text)
            except ValueError:
                raise ValueError(f"query parameter {key}={text!r} is not a valid value") from None
            setattr(args, name, value)
        return args

    def run_batch(self, items: list[tuple[str, np.ndarray, argparse.Namespace]]) -> list[dict]:
        """items: (name, BGR image, options). One engine call for all; then each item's own post-processing."""
        batch, contexts = self.model.load_images([(name, image, None) for name, image, _ in items],
                                                 self.header.config, self.runner.device)
        outputs = self.runner.run({self.header.input_name: as_input(batch, self.header.precision)})
        records = []
        for i, (context, (_, _, options)) in enumerate(zip(contexts, items)):
            one = {name: value[i:i + 1] for name, value in outputs.items()}
            records += self.model.records(one, [context], self.header.config, options)
        return records


def annotated_jpeg(image: np.ndarray, record: dict) -> str:
    """The image with the record's detections drawn, as a base64 JPEG data URL for the upload page."""
    ok, encoded = cv2.imencode(".jpg", draw_record(image, record), [cv2.IMWRITE_JPEG_QUALITY, 90])
    if not ok:
        raise RuntimeError("cannot encode the annotated image")
    return "data:image/jpeg;base64," + base64.b64encode(encoded.tobytes()).decode()
