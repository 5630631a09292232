"""INT8 sensitivity of a model: its quantizable layers ranked by the output SNR when each alone is quantized, on the
reference backend (for `--auto-keep` and `validate --sensitivity`)."""
from __future__ import annotations

from layers.precision import Precision
from wts.weight_map import WeightMap

from . import quantization
from .backends import ReferenceBackend
from .errors import say
from .model import ZooModel
from .networks import define_network


def sensitivity(model: ZooModel, weights: WeightMap, config: dict, scales: dict, args):
    """Layers ranked by the output SNR when each alone is quantized (worst first)."""
    x = model.sample_input(config, 1, getattr(args, "seed", 0))
    net, outputs = define_network(model, ReferenceBackend(), weights, config, Precision("fp32"))
    reference = ReferenceBackend().runner_for(net).run({model.input_name: x})[outputs[0]]
    return quantization.sensitivity(lambda backend, precision: define_network(model, backend, weights, config,
                                                                              precision),
                                    scales, x, model.input_name, reference, log=say)
