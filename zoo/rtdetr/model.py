"""RT-DETR as a model of the zoo: the YOLO walker's machinery (zoo.yolo.model.YoloModel: tables, reference module,
network, engine header) with RT-DETR's official tables, its flags and its NMS-free detection part (zoo.rtdetr.part).

Where the table comes from: a pickled checkpoint's own `yaml`, else `--model-yaml FILE`, else the official RT-DETR
table whose module has exactly the weights' keys and shapes; the class count is read from the encoder's score head.
"""
from __future__ import annotations

import copy
from dataclasses import asdict, dataclass
from typing import Mapping

import torch

from zoo.engine.errors import say
from zoo.engine.flags import bounded
from zoo.yolo import walker
from zoo.yolo.config import Match, YoloConfig, expected_shapes, line_tables, official_tables, problems
from zoo.yolo.model import YoloModel, parse_size
from zoo.yolo.registry import Options, TableError

from .part import DetrDetect

VARIANTS = ("rtdetr-l", "rtdetr-x", "rtdetr-resnet50", "rtdetr-resnet101")   # = the official tables' names
ATTENTION_FORMS = ("plugin", "layers")


@dataclass
class RtdetrConfig(YoloConfig):
    attention: str = "plugin"

    @property
    def options(self) -> Options:
        return Options(attention=self.attention, strides=self.strides)

    def to_dict(self) -> dict:
        return {**super().to_dict(), "attention": self.attention}

    @classmethod
    def from_dict(cls, values: Mapping) -> "RtdetrConfig":
        base = YoloConfig.from_dict(values)
        attention = values.get("attention", "plugin")
        if attention not in ATTENTION_FORMS:
            raise TableError(f"the engine header's attention form {attention!r} is not one of {ATTENTION_FORMS}")
        return cls(**asdict(base), attention=attention)


def folded_input_proj(expected: dict, arrays: Mapping) -> dict:
    """The decoder's input projections are nn.Sequential(Conv2d, BatchNorm2d) (`input_proj.<i>.0`, `.1`), not Conv
    blocks: folded weights (an ONNX export) hold `input_proj.<i>.0.bias` and no BatchNorm, which the builder reads
    (layers.conv_bn) as it reads a folded Conv."""
    expected = dict(expected)
    for key in [k for k in expected if ".input_proj." in k and k.endswith(".0.weight")]:
        conv = key[:-len(".weight")]
        bn = conv[:-len(".0")] + ".1"
        if f"{conv}.bias" in arrays and f"{bn}.weight" not in arrays:
            for leaf in ("weight", "bias", "running_mean", "running_var"):
                expected.pop(f"{bn}.{leaf}", None)
            expected[f"{conv}.bias"] = (expected[key][0],)
    return expected


def class_count(arrays: Mapping, table: dict) -> int | None:
    """Classes of the decoder at the table's last row, from its encoder score head; None if it has none."""
    head = len(table.get("backbone") or []) + len(table.get("head") or []) - 1
    bias = arrays.get(f"model.{head}.enc_score_head.bias")
    return None if bias is None else int(bias.size)


class RtdetrModel(YoloModel):
    input_name = "images"

    def __init__(self):
        self.name = self.line = "rtdetr"
        self.summary = ("RT-DETR (rtdetr-l, -x, -resnet50, -resnet101): a transformer detector without NMS; the table "
                        "and classes read from the weights (.pt, state_dict, .wts; --model-yaml for a table of your "
                        "own): build, infer, validate, bench.")

    def typed(self, config: dict) -> RtdetrConfig:
        return RtdetrConfig.from_dict(config)

    def part(self, config):
        return DetrDetect()

    # --- flags
    def add_arguments(self, parser):
        parser.add_argument("--variant", choices=VARIANTS,
                            help="random-weight variant when no --weights are given (default rtdetr-l); with --weights it "
                                 "must agree with them")
        parser.add_argument("--num-classes", type=bounded(int, 1, 100_000),
                            help="classes of random weights (default 80); with --weights it must agree with them")
        parser.add_argument("--input-size", type=parse_size,
                            help="network input, N or HxW, multiples of 32 (default 640)")
        parser.add_argument("--attention", choices=ATTENTION_FORMS, default="plugin",
                            help="multi-scale deformable attention as the plugin op (kernel embedded in the engine) "
                                 "or as plain layers (grid-sample per level: an engine without custom plugins); "
                                 "written in the engine header (default plugin)")
        parser.add_argument("--model-yaml", metavar="FILE",
                            help="a layer table of your own (ultralytics' yaml format) for weights that carry none "
                                 "(state_dict, .wts)")

    def add_infer_arguments(self, parser):
        DetrDetect().add_infer_arguments(parser)

    # --- configuration
    def _random_table(self, args):
        name = getattr(args, "variant", None) or VARIANTS[0]
        table = walker.read_table(args.model_yaml) if getattr(args, "model_yaml", None) else walker.official_table(name)
        table["nc"] = getattr(args, "num_classes", None) or int(table.get("nc", 80))
        return name, table, next(iter(table["scales"])) if table.get("scales") else None

    def random_module(self, args, seed):
        from zoo.yolo.random import randomize
        _, table, scale = self._random_table(args)
        options = Options(attention=getattr(args, "attention", "plugin"))
        with torch.random.fork_rng(devices=[]):  # what randomize leaves as built comes from the seed too
            torch.manual_seed(seed)
            module = walker.build_module(walker.resolve(table, scale), options).eval()
        if next(module.parameters()).is_meta:  # made on the meta device for its shapes only: nothing to draw
            return module
        module = randomize(module, seed).eval()
        with torch.no_grad():  # as the YOLO heads' random weights: a few queries score above 0.25, not all
            module.model[-1].dec_score_head[-1].bias -= 4.5
        return condition_attention(module, seed, getattr(args, "input_size", None) or (640, 640))

    def _config(self, weights, args) -> RtdetrConfig:
        arrays, source = weights.arrays(), weights.source
        meta = getattr(weights, "meta", None) or {}
        recorded = meta.get("yaml") if isinstance(meta.get("yaml"), dict) else None
        if recorded and (recorded.get("backbone") or recorded.get("head")):
            match = self._solve(arrays, [("checkpoint", recorded)], source, own=True)
        elif getattr(args, "model_yaml", None):
            match = self._solve(arrays, [(args.model_yaml, walker.read_table(args.model_yaml))], source)
        else:
            match = self._solve(arrays, official_tables(line_tables("rtdetr")), source)
        layers = walker.resolve(match.table, match.scale)
        names = meta.get("names")
        names = [names[k] for k in sorted(names)] if isinstance(names, dict) else names
        nc = int(match.table["nc"])
        config = RtdetrConfig(table=match.table, table_name=match.name, scale=match.scale, task="detect",
                              attention=getattr(args, "attention", "plugin"),
                              strides=walker.head_strides(layers, Options()),
                              class_names=tuple(str(n) for n in names) if names and len(names) == nc else None)
        self._check_flags(config, args, source)
        if "nc" in (recorded or {}) and int(recorded["nc"]) != nc:
            raise TableError(f"{source}: the checkpoint's yaml says nc={recorded['nc']}, its decoder has {nc} classes")
        config.input_size = tuple(getattr(args, "input_size", None) or DetrDetect.default_size)
        config.check_input_size(*config.input_size)
        if not source.startswith("random "):
            say(f"{source}: found {config.variant} weights ({nc} classes)")
        return config

    def _solve(self, arrays, tables, source: str, own: bool = False) -> Match:
        """The first table whose module has exactly the weights' keys and shapes (classes from the weights)."""
        best = None
        for name, raw in tables:
            table = copy.deepcopy(raw)
            nc = class_count(arrays, table)
            if nc is None:
                continue
            table["nc"] = nc
            scale = table.get("scale") or next(iter(table.get("scales") or [None]))
            layers = walker.resolve(table, scale)
            found = problems(folded_input_proj(expected_shapes(layers, Options()), arrays), arrays, layers)
            if not found:
                official = [n for n in line_tables("rtdetr") if own and _same_rows(walker.official_table(n), table)]
                return Match(table, official[0] if official else name, scale)
            if best is None or len(found) < len(best.problems):
                best = Match(table, name, scale, found)
        if best is None:
            raise TableError(f"{source}: no RT-DETR decoder (model.<last>.enc_score_head) in these weights, for "
                             f"table(s) {', '.join(n for n, _ in tables)}")
        more = f" (and {len(best.problems) - 1} more)" if len(best.problems) > 1 else ""
        raise TableError(f"{source}: closest table {best.name}: {best.problems[0]}{more}")

    def _check_flags(self, config, args, source: str) -> None:
        if source.startswith("random "):
            return
        variant = getattr(args, "variant", None)
        if variant and config.table_name != variant:
            raise TableError(f"--variant {variant} disagrees with {source}, which holds {config.variant} weights")
        if getattr(args, "num_classes", None) and args.num_classes != config.num_classes:
            raise TableError(f"--num-classes {args.num_classes} disagrees with {source}, which has "
                             f"{config.num_classes} classes")

    def check_infer_arguments(self, args, config):
        self.part(None).check_infer_arguments(args, self.typed(config))


@torch.no_grad()
def condition_attention(module, seed: int, size=(640, 640)):
    """Random weights give AIFI inputs in the hundreds, so its attention logits are in the tens of thousands: a
    softmax so sharp that FP32 rounding (any summation order) moves its output by 1e-3, which no trained model
    does (its AIFI input is a normalised projection). Scale AIFI's query and key projections so that the logits of
    a seeded random image have unit spread, as a trained model's roughly have."""
    from zoo.yolo.blocks.transformer import AIFI, sincos_position_embedding
    blocks = [m for m in module.modules() if isinstance(m, AIFI)]
    if not blocks:
        return module
    seen = {}

    def measure(block, inputs):
        x = inputs[0]
        c, h, w = x.shape[1:]
        tokens = x.flatten(2).permute(0, 2, 1) + sincos_position_embedding(h, w, c)
        d = c // block.ma.num_heads
        q, k = (tokens @ block.ma.in_proj_weight[i * c:(i + 1) * c].T + block.ma.in_proj_bias[i * c:(i + 1) * c]
                for i in range(2))
        logits = (q.view(-1, h * w, block.ma.num_heads, d).transpose(1, 2)
                  @ k.view(-1, h * w, block.ma.num_heads, d).permute(0, 2, 3, 1)) / d ** 0.5
        seen[id(block)] = float(logits.std())

    hooks = [block.register_forward_pre_hook(measure) for block in blocks]
    try:
        image = torch.rand(1, 3, *size, generator=torch.Generator().manual_seed(seed))
        module(image)
    finally:
        for hook in hooks:
            hook.remove()
    for block in blocks:
        c = block.ma.embed_dim
        factor = max(seen[id(block)], 1e-6) ** -0.5   # logits scale with the product of q and k
        block.ma.in_proj_weight[:2 * c] *= factor
        block.ma.in_proj_bias[:2 * c] *= factor
    return module


def _same_rows(a: dict, b: dict) -> bool:
    return (a.get("backbone"), a.get("head")) == (b.get("backbone"), b.get("head"))
