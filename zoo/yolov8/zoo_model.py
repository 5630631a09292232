"""YOLOv8 and YOLO11 as models of the zoo: one model class under two command names (`zoo.yolov8`, `zoo.yolo11`).

The family, scale, classes and head form come from the weights, so either command takes either family and says
which it found. The detector I/O (letterbox in, records with class names, annotated images, per-stage bench) is
YOLOv5's (zoo.yolov5.zoo_model), which this class extends; what differs is the network, the configuration and the
NMS semantics (ultralytics': no objectness, IoU 0.7, at most 300 boxes).
"""
from __future__ import annotations

import torch

from zoo.engine.errors import say, UserError
from zoo.engine.flags import bounded
from zoo.vision.nms import batched_nms
from zoo.yolov5.zoo_model import YoloV5Model, parse_size

from .builder import DECODES, define_yolov8
from .config import ConfigError, YoloV8Config, config_for, infer_config
from .model import FAMILIES, SCALES, randomize_

NMS_DEFAULTS = dict(conf=0.25, iou=0.7, max_det=300)
SPPF_ACTS = {"silu": True, "none": False}


class YoloV8Model(YoloV5Model):
    input_name = "images"
    nms_defaults = NMS_DEFAULTS  # ultralytics' predict defaults: IoU 0.7, at most 300 boxes

    def __init__(self, name: str = "yolov8"):
        if name not in FAMILIES:
            raise ValueError(f"unknown command name {name!r}; known: {FAMILIES}")
        self.name = name
        self.summary = ("YOLOv8 and YOLO11 detection (n/s/m/l/x or custom width/depth/classes, read from the "
                        "weights: .pt, state_dict, .wts, folded ONNX weights): build, infer, validate, bench.")

    def add_arguments(self, parser):
        parser.add_argument("--family", choices=FAMILIES,
                            help=f"family of random weights when no --weights are given (default {self.name}); "
                                 "with --weights it must agree with them")
        parser.add_argument("--scale", choices=sorted(SCALES["yolov8"]), default="n",
                            help="scale of random weights (default n)")
        parser.add_argument("--num-classes", type=bounded(int, 1, 100_000), default=80,
                            help="classes of random weights (default 80)")
        parser.add_argument("--input-size", type=parse_size, default=(640, 640),
                            help="network input, N or HxW, multiples of 32 (default 640)")
        parser.add_argument("--decode", choices=DECODES, default="plugin",
                            help="plugin: the zoo::dfl_decode plugin (kernel embedded in the engine); layers: plain "
                                 "TensorRT layers, an engine without custom plugins (default plugin)")
        parser.add_argument("--sppf-act", choices=sorted(SPPF_ACTS), default=None,
                            help="activation of SPPF's cv1: silu (released yolov8/yolo11 weights) or none (models "
                                 "built by ultralytics 8.4). A pickled checkpoint records it; a state_dict or .wts "
                                 "cannot (default silu; written in the engine header)")

    # --- configuration
    def random_module(self, args, seed):
        sppf_act = SPPF_ACTS[args.sppf_act or "silu"]
        config = config_for(args.family or self.name, args.scale, args.num_classes, sppf_act=sppf_act)
        return randomize_(config.build_module(), seed).eval()

    def config_from_weights(self, weights, args):
        meta = getattr(weights, "meta", None)
        sppf_act = SPPF_ACTS[args.sppf_act] if getattr(args, "sppf_act", None) else None
        try:
            config = infer_config(weights.arrays(), weights.source, meta, sppf_act)
        except ConfigError as e:
            raise UserError(str(e)) from None
        if getattr(args, "family", None) and args.family != config.family:
            raise UserError(f"--family {args.family} disagrees with {weights.source}, which holds {config.variant} "
                            "weights")
        if not weights.source.startswith("random "):
            recorded = "recorded in the checkpoint" if meta and meta.get("activations") else "from --sppf-act"
            say(f"{weights.source}: found {config.variant} weights ({config.num_classes} classes, SPPF cv1 "
                f"{'SiLU' if config.sppf_act else 'without activation'} {recorded})")
        height, width = args.input_size
        config.check_input_size(height, width)
        values = config.to_dict()
        values.update(variant=config.variant, input_size=[height, width], decode=args.decode,
                      sppf_act_name="silu" if config.sppf_act else "none")
        return values

    def variant(self, config):
        return config["variant"]

    def reference_module(self, config):
        return YoloV8Config.from_dict(config).build_module()

    def define(self, net, weights, config, x):
        return [define_yolov8(net, weights, YoloV8Config.from_dict(config), x, config.get("decode", "plugin"))]

    # --- inference
    def output_name(self, config) -> str:
        return f"model.{22 if config['family'] == 'yolov8' else 23}"

    def detections(self, outputs: dict, config: dict, args) -> list[torch.Tensor]:
        """Ultralytics' NMS on the (B, 4 + nc, A) output, on whichever device it lives on."""
        prediction = outputs[self.output_name(config)].transpose(1, 2)
        return batched_nms(prediction, args.conf, args.iou, args.classes, args.agnostic, args.max_det,
                           objectness=False)


