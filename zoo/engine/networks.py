"""Weights -> the networks a command builds: reading weights (or seeded random ones), defining a model's network on a
backend at a precision (FP32 outputs, every weight used), and the stages of a model (zoo.engine.pipeline)."""
from __future__ import annotations

import torch

import layers
from layers.precision import Precision
from wts.weight_map import WeightMap
from zoo.trt_api import trt

from .errors import UserError, say
from .model import ZooModel, state_dict_arrays
from .pipeline import Stage, is_pipeline, single_stage


INTEGER_OUTPUTS = (trt.uint8, trt.int32)


def load_weights(model: ZooModel, args) -> tuple[WeightMap, dict, torch.nn.Module | None]:
    """(weights, config, random module or None). Without --weights, a seeded random reference module."""
    if args.weights is None:
        module = model.random_module(args, args.seed)
        weights = WeightMap(state_dict_arrays(module), f"random {model.name} weights (seed {args.seed})")
        return weights, model.config_from_weights(weights, args), module
    from .checkpoint import load_state_dict
    say(f"loading weights {args.weights} ...")
    checkpoint = load_state_dict(args.weights)
    weights = WeightMap(checkpoint.tensors, str(args.weights))
    weights.meta = checkpoint.meta  # what a pickled model recorded about itself (yaml, activations), or None
    config = model.config_from_weights(weights, args)
    if checkpoint.names is not None:
        names = checkpoint.names
        config["class_names"] = [names[i] for i in sorted(names)] if isinstance(names, dict) else list(names)
    return weights, config, None


def define_network(model: ZooModel, backend, weights: WeightMap, config: dict, precision: Precision | None = None):
    """The model's network on `backend` at `precision`; float outputs are always FP32. Returns (network, output names)."""
    import layers
    precision = precision or Precision()
    weights.precision = precision
    weights.reset_usage()
    net = backend.create_network()
    x = net.add_input(model.input_name, precision.dtype, (-1, *model.input_shape(config)))
    outputs = []
    for tensor in model.define(net, weights, config, x):
        if tensor.dtype not in (trt.float32, *INTEGER_OUTPUTS):  # the consumer gets FP32; the FP16 tensor keeps
            # a derived name. Integer outputs (a class map) stay what they are.
            name = tensor.name
            tensor.name = f"{name}/{precision.mode}"
            tensor = layers.cast(net, tensor, trt.float32, name)
        net.mark_output(tensor)
        outputs.append(tensor)
    unused = weights.unused()
    if unused:
        raise UserError(f"{weights.source}: {len(unused)} weights are not used by {model.name} "
                        f"({model.variant(config)}): {unused[:5]}; are these weights of another architecture?")
    return net, [t.name for t in outputs]


def model_stages(model: ZooModel, args) -> list[Stage]:
    """The networks a command builds: a pipeline's stages, or a single network as its one stage."""
    if is_pipeline(model):
        return model.load_stages(args)
    weights, config, _ = load_weights(model, args)
    batch = getattr(args, "batch", None) or (1, 1, 8)
    batch = batch if isinstance(batch, tuple) else (1, batch, max(8, batch))
    return [single_stage(model, weights, config, batch)]
