"""The precision of a build, expressed in the network itself (TensorRT 11 has no FP16/INT8 builder flags).

- fp32: FP32 input, weights and activations.
- fp16: FP16 input, weights (BatchNorm folded in FP32, then cast) and activations; FP32 outputs through casts.
  Box arithmetic stays FP32 (the decode reads FP16 and computes and writes FP32).
- int8: the fp16 network plus explicit quantization: a Q/DQ pair on the input of every convolution and matrix
  multiply (activations per tensor, scales from calibration) and on their weights (per output channel, scale =
  max|w| / 127), symmetric, FP32 scales, the 3-argument add_quantize/add_dequantize of TensorRT 10 and 11.
  Layers named in `keep` stay FP16; with `only`, just those layers are quantized (sensitivity analysis).

A `Precision` travels with the weights (`WeightMap.precision`): INT8 scales are parameters of the network like its
weights, and `layers/` reads both from the same object. Each quantizable op reports itself (`seen`), which is how
calibration knows which tensors to observe and sensitivity knows which layers to try.
"""
from __future__ import annotations

from dataclasses import dataclass, field

from zoo.trt_api import trt

PRECISIONS = ("fp32", "fp16", "int8")


@dataclass
class Precision:
    mode: str = "fp32"
    activation_scales: dict[str, float] = field(default_factory=dict)   # INT8: input tensor name -> scale
    keep: frozenset[str] = frozenset()                                  # INT8: layer names left in FP16
    only: frozenset[str] | None = None                                  # INT8: quantize just these
    seen: list[tuple[str, str]] = field(default_factory=list)           # (layer name, input tensor name)

    def __post_init__(self):
        if self.mode not in PRECISIONS:
            raise ValueError(f"precision must be one of {PRECISIONS}, got {self.mode!r}")

    @property
    def dtype(self):
        """The type of the network input and of every activation outside Q/DQ pairs."""
        return trt.float32 if self.mode == "fp32" else trt.float16

    def input_scale(self, layer: str, x) -> float | None:
        """Called by every quantizable op: the INT8 scale of its input, or None to leave the op unquantized."""
        self.seen.append((layer, x.name))
        if self.mode != "int8" or layer in self.keep or (self.only is not None and layer not in self.only):
            return None
        try:
            return self.activation_scales[x.name]
        except KeyError:
            raise ValueError(f"the calibration cache has no scale for tensor {x.name!r} (input of {layer}); "
                             f"recalibrate with this model and zoo version") from None

    def quantizable_layers(self) -> list[str]:
        return list(dict.fromkeys(layer for layer, _ in self.seen))


def precision_of(weights) -> Precision:
    return getattr(weights, "precision", None) or Precision()
