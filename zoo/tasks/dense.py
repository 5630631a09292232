"""What the two dense-prediction parts share (semantic segmentation, depth): the detectors' letterbox in; one map
per image at the network input's size, mapped back to the original image (padding cropped, resized); records,
files written next to `infer`'s other outputs (never over an input), bench stages (pre-processing, network, maps).
A subclass says which output is its map, how it is resized back, what a record says about it and which files it
writes."""
from __future__ import annotations

from pathlib import Path

import numpy as np

from zoo.engine.errors import UserError
from zoo.engine.timing import ms_per_image
from zoo.vision.letterbox import unletterbox_map

from .detect import Detect, batch_index, write_image


class DensePart:
    kind = "other"                # a Triton ensemble returns the JSON records only
    default_size = (640, 640)
    default_classes = 1
    nearest = False               # how the map is resized back to the image: nearest (class ids) or bilinear
    stages = ("preprocess", "network", "maps")

    def __init__(self, **_detector_options):
        """The options of a detector's part (objectness, NMS defaults) do not apply to a dense map."""

    # --- the detectors' letterbox in
    sample_input = Detect.sample_input
    load_images = Detect.load_images
    preprocess = Detect.preprocess

    def add_infer_arguments(self, parser) -> None:
        parser.add_argument("--no-draw", action="store_true", help="do not write the pictures to --out")

    def check_infer_arguments(self, args, config) -> None:
        pass

    # --- what a subclass says
    def network_maps(self, outputs: dict, config) -> np.ndarray:
        """(B, H, W) at the network input's size."""
        raise NotImplementedError

    def describe(self, values: np.ndarray, config, embed: bool) -> dict:
        """The record's fields for one map; `embed`: no files are written, so the record carries what `serve`
        draws."""
        raise NotImplementedError

    def write_files(self, out: Path, context: dict, values: np.ndarray, record: dict, config, draw: bool) -> None:
        raise NotImplementedError

    # --- shared
    @staticmethod
    def output(outputs: dict, name: str):
        if name not in outputs:  # an engine whose header's config does not describe its network
            raise UserError(f"the network has no output {name!r} (it has {sorted(outputs)[:4]}): the engine "
                            "header's configuration does not match the engine")
        return outputs[name]

    def image_maps(self, maps: np.ndarray, contexts: list, index: int) -> np.ndarray:
        return unletterbox_map(maps[batch_index(contexts, index)], contexts[index]["letterbox"], self.nearest)

    def records(self, outputs, contexts, config, args) -> list[dict]:
        maps = self.network_maps(outputs, config)
        out = Path(args.out) if getattr(args, "out", None) else None
        draw = not getattr(args, "no_draw", False)
        records = []
        for index, context in enumerate(contexts):
            if context is not None and "error" in context:
                records.append({"file": context["file"], "error": context["error"]})
                continue
            if context is None or "image" not in context:  # a .npy batch: the map at the network input's size
                index_of = (context or {}).get("index", index)
                records.append({"index": index_of, **self.describe(maps[batch_index(contexts, index)], config,
                                                                   embed=False)})
                continue
            values = self.image_maps(maps, contexts, index)
            record = {"file": context["file"], **self.describe(values, config, embed=out is None)}
            if out is not None:
                self.write_files(out, context, values, record, config, draw)
            records.append(record)
        return records

    @staticmethod
    def file_beside(out: Path, context: dict, suffix: str) -> Path:
        """out/<input stem><suffix>, e.g. out/bus.classes.png."""
        return out / (Path(context["file"]).stem + suffix)

    @staticmethod
    def write_picture(path: Path, picture: np.ndarray, context: dict) -> None:
        write_image(path, picture, context["file"])  # atomic, never over the input image

    def bench_stages(self, run_network, images, config, args, device) -> dict:
        """Milliseconds per image of each stage over `images` in batches of args.batch, after one warm-up batch:
        letterbox, network, and the maps back in each image's pixels."""
        def run_batch(chunk, mark):
            batch, params = self.preprocess(chunk, config, device, with_params=True)
            mark()
            outputs = run_network(batch)
            mark()
            maps = self.network_maps(outputs, config)
            for b, p in enumerate(params):
                unletterbox_map(maps[b], p, self.nearest)
            mark()

        return ms_per_image(images, args.batch, self.stages, run_batch, device)
