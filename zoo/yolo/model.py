"""The YOLO line as one model of the zoo: a layer table (zoo.yolo.walker) composed with a task part (zoo.tasks).

The commands `zoo.yolov5` (YOLOv5 v7.0's tables and weights) and `zoo.yolov8` / `zoo.yolo11` (the ultralytics line)
are this class with their own official tables and flags. Where the table comes from: a pickled checkpoint's own
`yaml`, else `--model-yaml FILE`, else the official table whose shapes (at one of its scales) are the weights'.
"""
from __future__ import annotations

import argparse

import numpy as np

from zoo.engine.model import ZooModel
from zoo.engine.errors import UserError, say
from zoo.engine.flags import bounded
from zoo.tasks import part

from . import walker
from .activation import default_activation
from .blocks.detect import uses_one2one
from .blocks.end2end import align_rows, check_max_det
from .config import (HEADS, TASK_OF_HEAD, YoloConfig, expected_shapes, head_facts, line_tables, official_tables,
                     problems, recorded_sppf_act, solve)
from .registry import Options, TableError, using

YOLOV5_TASKS = ("detect", "segment", "classify")
TASKS = ("detect", "segment", "pose", "obb", "classify", "semantic", "depth")
SUFFIX = {"detect": "", "segment": "-seg", "pose": "-pose", "obb": "-obb", "classify": "-cls", "semantic": "-sem",
          "depth": "-depth"}
SCALES = ("n", "s", "m", "l", "x")
LINE_SCALES = ("n", "t", "s", "m", "b", "c", "l", "e", "x")   # YOLOv10 adds b, YOLOv9 is t/s/m/c/e
SMALLEST_SCALE = {"yolov9": "t"}                               # random weights' default scale; n elsewhere
SPPF_ACTS = {"silu": True, "none": False}
FAMILIES = ("yolov8", "yolo11", "yolo26", "yolov10", "yolo12", "yolov9")   # the ultralytics line's commands
SUMMARIES = {
    "yolov8": "YOLOv8 and YOLO11: detection, segmentation, pose, oriented boxes and classification: ",
    "yolo11": "YOLOv8 and YOLO11: detection, segmentation, pose, oriented boxes and classification: ",
    "yolo26": "YOLO26 (end to end, no NMS; --head one2many for its NMS branch) and the whole ultralytics line: ",
    "yolov10": "YOLOv10 (end to end, no NMS) and the whole ultralytics line: ",
    "yolo12": "YOLO12 (area attention) and the whole ultralytics line: ",
    "yolov9": "YOLOv9 (GELAN) and the whole ultralytics line: ",
}


# a table identical to another family's (ultralytics 8.4.190): one file, or weights could not tell which it is
SAME_TABLE = {"yolo26-cls": "yolo11-cls"}


def family_table(family: str, task: str, scale: str) -> str:
    """The official table of random weights: `<family><suffix>` (tables with scales), else `<family><scale><suffix>`
    (YOLOv10 and YOLOv9 have a table per scale)."""
    for name in (family + SUFFIX[task], family + scale + SUFFIX[task], SAME_TABLE.get(family + SUFFIX[task], "")):
        if name in walker.table_names():
            return name
    raise TableError(f"--family {family} has no official {task} table at scale {scale} (tables: "
                     f"{', '.join(n for n in walker.table_names() if n.startswith(family)) or 'none'})")


def default_sppf_act(table_name: str) -> bool:
    """SPPF cv1's activation when nothing records it: YOLO26 was released by ultralytics 8.4 (none); the families
    released before it have SiLU."""
    return not table_name.startswith("yolo26")


def parse_size(text: str) -> tuple[int, int]:
    """'640' -> (640, 640); '480x640' -> (height, width)."""
    try:
        parts = [int(p) for p in text.lower().split("x")]
    except ValueError:
        raise argparse.ArgumentTypeError(f"input size {text!r} is not N or HxW") from None
    if len(parts) == 1:
        parts *= 2
    if len(parts) != 2 or min(parts) <= 0 or max(parts) > 16384:
        raise argparse.ArgumentTypeError(f"input size {text!r} is out of range (allowed: N or HxW, each in 1..16384)")
    return parts[0], parts[1]


def parse_kpt_shape(text: str) -> tuple[int, int]:
    try:
        k, d = (int(v) for v in text.lower().replace("x", ",").split(","))
    except ValueError:
        raise argparse.ArgumentTypeError(f"keypoint shape {text!r} is not K,D (e.g. 17,3)") from None
    if k < 1 or d not in (2, 3):
        raise argparse.ArgumentTypeError(f"keypoint shape {text!r}: K >= 1 and D = 2 or 3")
    return k, d


class YoloModel(ZooModel):
    input_name = "images"

    def __init__(self, name: str = "yolov8"):
        if name != "yolov5" and name not in FAMILIES:
            raise ValueError(f"unknown YOLO command {name!r}")
        self.name = name
        self.line = "yolov5" if name == "yolov5" else "ultralytics"
        self.summary = ("YOLOv5 v7.0 detection, segmentation (-seg) and classification (-cls), P5 and P6: "
                        if self.line == "yolov5" else SUMMARIES[name]) + \
            ("the layer table, scale, task and classes read from the weights (.pt, state_dict, .wts, folded ONNX "
             "weights; --model-yaml for a table of your own): build, infer, validate, bench.")

    # --- the typed configuration behind the engine header's plain data
    def typed(self, config: dict) -> YoloConfig:
        return YoloConfig.from_dict(config)

    def part(self, config: YoloConfig):
        if config.task == "classify":
            return part("classify", yolov5=config.yolov5)
        return part(config.task, objectness=config.yolov5)

    # --- flags
    def add_arguments(self, parser):
        if self.line == "yolov5":
            parser.add_argument("--variant", choices=list(SCALES) + [s + "6" for s in SCALES],
                                help="random-weight variant when no --weights are given (default n); with --weights "
                                     "it must agree with them")
        else:
            parser.add_argument("--family", choices=FAMILIES,
                                help=f"family of random weights when no --weights are given (default {self.name}); "
                                     "with --weights it must agree with them")
            parser.add_argument("--scale", choices=LINE_SCALES,
                                help="scale of random weights (default n; t for yolov9; YOLOv10 adds b, YOLOv9 "
                                     "has t/s/m/c/e)")
            parser.add_argument("--sppf-act", choices=sorted(SPPF_ACTS), default=None,
                                help="activation of SPPF's cv1: silu (released weights) or none (models built by "
                                     "ultralytics 8.4). A pickled checkpoint records it; a state_dict or .wts cannot "
                                     "(default silu; none for YOLO26; written in the engine header)")
            parser.add_argument("--head", choices=HEADS, default="auto",
                                help="end-to-end heads (YOLO26, YOLOv10): one2one runs the NMS-free branch (top-k "
                                     "inside the network), one2many the branch made for NMS (ultralytics' "
                                     "end2end=False); auto: one2one when the weights have it (written in the engine "
                                     "header)")
            parser.add_argument("--max-det", type=bounded(int, 1, 100_000), default=300,
                                help="detections kept per image (default 300); an end-to-end network outputs this "
                                     "many rows (at most 3840, TensorRT's top-k limit), written in the engine header")
            parser.add_argument("--kpt-shape", type=parse_kpt_shape,
                                help="pose: keypoints x values (e.g. 17,3) for weights that do not record it")
        parser.add_argument("--task", choices=YOLOV5_TASKS if self.line == "yolov5" else TASKS, default="detect",
                            help="task of random weights when no --weights are given (weights say their own task; "
                                 "default detect)")
        parser.add_argument("--num-classes", type=bounded(int, 1, 100_000),
                            help="classes of random weights (default 80; 1000 for classify); with --weights it must "
                                 "agree with them")
        parser.add_argument("--input-size", type=parse_size,
                            help="network input, N or HxW, multiples of the largest stride (default 640; 224 for "
                                 "classify)")
        parser.add_argument("--decode", choices=("plugin", "layers"), default="plugin",
                            help="plugin: the decode plugin (kernel embedded in the engine); layers: plain TensorRT "
                                 "layers, an engine without custom plugins (default plugin)")
        parser.add_argument("--model-yaml", metavar="FILE",
                            help="a layer table of your own (ultralytics' yaml format) for weights that carry none "
                                 "(state_dict, .wts, ONNX)")

    def add_infer_arguments(self, parser):
        # infer also takes the model's flags, whose --max-det (the end-to-end rows) is then the same flag
        defined = any(action.dest == "max_det" for action in parser._actions)
        part("detect", objectness=self.line == "yolov5").add_infer_arguments(parser, with_max_det=not defined)

    def check_infer_arguments(self, args, config):
        n = config["num_classes"]
        if getattr(args, "classes", None) and max(args.classes) >= n:
            raise UserError(f"--classes: {max(args.classes)} is out of range (the model has {n} classes: allowed "
                            f"0..{n - 1})")

    # --- configuration
    def _random_table(self, args) -> tuple[str, dict, str | None]:
        task = getattr(args, "task", "detect")
        if self.line == "yolov5":
            variant = getattr(args, "variant", None) or "n"
            name = "yolov5v7" + ("-p6" if variant.endswith("6") else SUFFIX[task])
            scale = variant.rstrip("6")
        else:
            family = getattr(args, "family", None) or self.name
            scale = getattr(args, "scale", None) or SMALLEST_SCALE.get(family, "n")
            name = family_table(family, task, scale)
        table = walker.read_table(args.model_yaml) if getattr(args, "model_yaml", None) else walker.official_table(name)
        table["nc"] = getattr(args, "num_classes", None) or {"classify": 1000, "semantic": 19, "depth": 1}.get(task, 80)
        if task == "pose":
            table["kpt_shape"] = list(getattr(args, "kpt_shape", None) or (17, 3))
        return name, table, scale if table.get("scales") else None

    def random_module(self, args, seed):
        from .random import calibration_size, randomize
        name, table, scale = self._random_table(args)
        sppf = getattr(args, "sppf_act", None)
        options = Options(activation=default_activation(table, name),
                          sppf_act=SPPF_ACTS[sppf] if sppf else default_sppf_act(name),
                          head=getattr(args, "head", None) or "auto")
        calib = calibration_size(getattr(args, "input_size", None), anchored=self.line == "yolov5")
        return randomize(walker.build_module(walker.resolve(table, scale), options), seed, calib).eval()

    def config_from_weights(self, weights, args):
        return self._config(weights, args).to_dict()

    def _config(self, weights, args) -> YoloConfig:
        arrays, source = weights.arrays(), weights.source
        meta = getattr(weights, "meta", None) or {}
        flag_act = SPPF_ACTS[args.sppf_act] if getattr(args, "sppf_act", None) else None
        options = Options(sppf_act=True if flag_act is None else flag_act)
        recorded_kpt = (meta.get("yaml") or {}).get("kpt_shape") if isinstance(meta.get("yaml"), dict) else None
        kpt_flag = getattr(args, "kpt_shape", None)
        if isinstance(meta.get("yaml"), dict) and (meta["yaml"].get("backbone") or meta["yaml"].get("head")):
            match = self._checkpoint_table(meta["yaml"], arrays, options, source, kpt_flag)
        else:
            if getattr(args, "model_yaml", None):
                tables = [(args.model_yaml, walker.read_table(args.model_yaml))]
                match = solve(arrays, tables, options, source, kpt_flag, recorded_kpt)
            else:
                match = self._solve_official(arrays, options, source, kpt_flag, recorded_kpt)
        layers = walker.resolve(match.table, match.scale)
        recorded = recorded_sppf_act(meta, layers)
        if recorded is not None and flag_act is not None and recorded != flag_act:
            raise TableError(f"{source}: --sppf-act {args.sppf_act} contradicts the checkpoint, whose SPPF cv1 has "
                             f"{'an activation' if recorded else 'no activation'}")
        sppf_act = recorded if recorded is not None else flag_act if flag_act is not None else \
            default_sppf_act(match.name)
        head = layers[-1].block.name.rpartition(".")[2]
        task = TASK_OF_HEAD.get(head)
        if task is None:
            raise TableError(f"{source}: the table ends in {head}, which is no task's head")
        strides = walker.head_strides(layers, Options(sppf_act=sppf_act))
        names = meta.get("names") if isinstance(meta, dict) else None
        names = [names[k] for k in sorted(names)] if isinstance(names, dict) else names
        nc = int(match.table.get("nc", 80))
        config = YoloConfig(table=match.table, table_name=match.name, scale=match.scale, task=task,
                            decode=getattr(args, "decode", "plugin"), sppf_act=sppf_act, strides=strides,
                            class_names=tuple(str(n) for n in names) if names and len(names) == nc else None,
                            head_branch=getattr(args, "head", None) or "auto",
                            max_det=getattr(args, "max_det", None) or 300)
        if config.end2end:
            check_max_det(config.max_det)
        if task != "classify":  # a branch the weights lack, asked by --head: one line now, not at build
            with using(config.options):
                uses_one2one(bool(match.table.get("end2end")) or head == "v10Detect",
                             bool(match.table.get("one2many", True)))
        self._check_flags(config, args, source)
        self._check_record(config, meta, source)
        part_ = self.part(config)
        config.input_size = tuple(getattr(args, "input_size", None) or part_.default_size)
        config.check_input_size(*config.input_size)
        if not source.startswith("random "):
            sppf = ""
            if any(layer.block.name == "SPPF" for layer in layers):
                origin = ("recorded in the checkpoint" if recorded is not None else "from --sppf-act"
                          if flag_act is not None else f"as {match.name.partition('-')[0]} releases it")
                sppf = f", SPPF cv1 {'SiLU' if sppf_act else 'without activation'} {origin}"
            say(f"{source}: found {config.variant} weights ({config.num_classes} classes{sppf})")
        return config

    def _solve_official(self, arrays, options, source, kpt_flag, recorded_kpt):
        """This line's official tables; weights of the other line's are sent to their command."""
        try:
            return solve(arrays, official_tables(line_tables(self.line)), options, source, kpt_flag, recorded_kpt)
        except TableError as error:
            first = error
        other = "ultralytics" if self.line == "yolov5" else "yolov5"
        try:
            found = solve(arrays, official_tables(line_tables(other)), options, source, kpt_flag, recorded_kpt)
        except TableError:
            raise first from None
        command = "zoo.yolov8" if other == "ultralytics" else "zoo.yolov5"
        name = "YOLOv5 v7.0" if other == "yolov5" else "YOLOv8/YOLO11"
        raise TableError(f"{source}: these are {name} weights (table {found.name}, scale {found.scale}); use "
                         f"python -m {command}")

    def _checkpoint_table(self, table, arrays, options, source, kpt_flag):
        """The pickled model's own table, checked key by key against its weights."""
        from .config import Match
        scale = table.get("scale") if table.get("scales") else None
        if table.get("scales") and not scale:
            scale = next(iter(table["scales"]))
        facts = head_facts(table, arrays, kpt_flag, table.get("kpt_shape"))  # which branches the file holds
        table = facts if facts is not None else table
        layers = walker.resolve(table, scale)
        if kpt_flag is not None and table.get("kpt_shape") and tuple(kpt_flag) != tuple(table["kpt_shape"]):
            raise TableError(f"--kpt-shape {list(kpt_flag)} contradicts the checkpoint's kpt_shape "
                             f"{list(table['kpt_shape'])}")
        found = problems(expected_shapes(layers, options, arrays), arrays, layers)
        if found:
            more = f" (and {len(found) - 1} more)" if len(found) > 1 else ""
            raise TableError(f"{source}: the checkpoint's own table: {found[0]}{more}")
        rows = (table.get("backbone"), table.get("head"))
        official = [name for name in line_tables(self.line)
                    if (lambda t: (t.get("backbone"), t.get("head")) == rows)(walker.official_table(name))]
        return Match(table, official[0] if official else "checkpoint", scale)

    def _check_flags(self, config: YoloConfig, args, source: str) -> None:
        """One rule for every model: a flag that disagrees with the weights is an error, never ignored."""
        if source.startswith("random "):
            return
        variant = getattr(args, "variant", None)
        if variant and not config.variant.startswith(f"yolov5{variant}") and config.variant != f"yolov5{variant}":
            raise TableError(f"--variant {variant} disagrees with {source}, which holds {config.variant}")
        family = getattr(args, "family", None)
        if family and not config.table_name.startswith(family) and config.table_name in walker.table_names():
            raise TableError(f"--family {family} disagrees with {source}, which holds {config.variant} weights")
        if getattr(args, "num_classes", None) and args.num_classes != config.num_classes:
            raise TableError(f"--num-classes {args.num_classes} disagrees with {source}, which has "
                             f"{config.num_classes} classes")

    @staticmethod
    def _check_record(config: YoloConfig, meta: dict, source: str) -> None:
        """What a pickled model says about itself beyond its table must agree with the weights."""
        yaml = meta.get("yaml") if isinstance(meta.get("yaml"), dict) else {}
        if "nc" in yaml and int(yaml["nc"]) != config.num_classes:
            raise TableError(f"{source}: the checkpoint's yaml says nc={yaml['nc']}, its head has "
                             f"{config.num_classes} classes")
        if isinstance(yaml.get("scale"), str) and config.scale and yaml["scale"] != config.scale:
            raise TableError(f"{source}: the checkpoint's yaml says scale {yaml['scale']!r}, its weights are "
                             f"{config.variant}")
        stride = meta.get("stride")
        if stride is not None and config.strides:
            recorded = [int(s) for s in np.asarray(stride, np.float64).reshape(-1)]
            if recorded != list(config.strides):
                raise TableError(f"{source}: the checkpoint's strides {recorded} are not {list(config.strides)}, "
                                 "those of its table")

    def variant(self, config):
        return self.typed(config).variant

    def reference_module(self, config):
        return self.typed(config).module()

    def input_shape(self, config):
        return (3, *config["input_size"])

    def aligned_output(self, config, index, got, expected):
        """End-to-end rows (output 0) listed in the reference's order: equal scores may come in another order."""
        if index or not self.typed(config).end2end or got.shape != expected.shape:
            return got
        return align_rows(got, expected)

    def define(self, net, weights, config, x):
        typed = self.typed(config)
        return walker.define(net, weights, typed.layers, typed.options, x)

    # --- what the task part does
    def output_name(self, config) -> str:
        return self.typed(config).output_name

    def output_kind(self, config) -> str:
        typed = self.typed(config)
        return self.part(typed).kind

    def sample_input(self, config, batch, seed=0):
        typed = self.typed(config)
        return self.part(typed).sample_input(typed, batch, seed)

    def load_images(self, items, config, device="cpu"):
        typed = self.typed(config)
        return self.part(typed).load_images(items, typed, device)

    def detections(self, outputs, config, args):
        typed = self.typed(config)
        return self.part(typed).detections(outputs, typed, args)

    def records(self, outputs, contexts, config, args):
        typed = self.typed(config)
        return self.part(typed).records(outputs, contexts, typed, args)

    def agreement(self, fp32_outputs, low_outputs, config):
        typed = self.typed(config)
        return self.part(typed).agreement(fp32_outputs, low_outputs, typed)

    def agreement_terms(self, config):
        return self.part(self.typed(config)).agreement_terms

    def bench_stages(self, run_network, images, config, args, device):
        typed = self.typed(config)
        return self.part(typed).bench_stages(run_network, images, typed, args, device)
