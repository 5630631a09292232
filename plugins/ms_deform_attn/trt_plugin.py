"""`zoo::ms_deform_attn` as a TensorRT `tensorrt.plugin` (QDP) op with an ahead-of-time implementation.

Importing this module registers the op with TensorRT (once per process). It needs `tensorrt` (10.9+ for AOT) and
`triton`; `plugins.ms_deform_attn.add_ms_deform_attn` imports it only when it builds on a real TensorRT network.
The engine then carries the kernel's PTX and runs with no Python, no plugin library and no registration at load
time. The levels' shapes travel as a 1-D int32 array attribute (QDP attributes cannot be tuples); with heads,
channels and points they become constants inside the PTX. The PTX ISA version is capped at what this machine's
driver accepts (`plugins.ptx`); set ZOO_PTX_VERSION (e.g. 90) for the driver of another machine that will run the
engine.

No `from __future__ import annotations` here: `tensorrt.plugin` inspects the annotations as objects.
"""
from typing import List, Tuple, Union

import numpy as np
import numpy.typing as npt
import tensorrt as trt
import tensorrt.plugin as trtp

from ..ptx import ptx_version
from .kernel import compile_ms_deform_attn_ptx
from .reference import OP_ID, level_shapes


def _device_cc() -> int:
    import torch

    if not torch.cuda.is_available():
        raise RuntimeError("ms_deform_attn: compiling the AOT plugin needs the CUDA device the engine is built for")
    major, minor = torch.cuda.get_device_capability()
    return major * 10 + minor


def _static(expr, what: str) -> int:
    if not expr.is_constant:
        raise ValueError(f"ms_deform_attn: {what} must be static")
    return expr.constant_value()


@trtp.register(OP_ID)
def ms_deform_attn_desc(value: trtp.TensorDesc, sampling_locations: trtp.TensorDesc,
                        attention_weights: trtp.TensorDesc,
                        spatial_shapes: npt.NDArray[np.int32]) -> trtp.TensorDesc:
    levels = level_shapes(spatial_shapes)
    v, loc = value.shape_expr, sampling_locations.shape_expr
    if not v[1].is_fake and v[1].is_constant and v[1].constant_value() != sum(h * w for h, w in levels):
        raise ValueError(f"ms_deform_attn: value has {v[1].constant_value()} cells, the levels {list(levels)} have "
                         f"{sum(h * w for h, w in levels)}")
    # expression on the left: ShapeExpr has no reflected operators
    return trtp.from_shape_expr((v[0], loc[1], v[2] * v[3]), dtype=value.dtype)


@trtp.autotune(OP_ID)
def ms_deform_attn_autotune(value: trtp.TensorDesc, sampling_locations: trtp.TensorDesc,
                            attention_weights: trtp.TensorDesc,
                            outputs: Tuple[trtp.TensorDesc]) -> List[trtp.AutoTuneCombination]:
    # all FP32 or all FP16 (an FP16 decoder needs no casts around it); the kernel computes in FP32 either way
    return [trtp.AutoTuneCombination("FP32, FP32, FP32, FP32", "LINEAR"),
            trtp.AutoTuneCombination("FP16, FP16, FP16, FP16", "LINEAR")]


@trtp.aot_impl(OP_ID)
def ms_deform_attn_aot(value: trtp.TensorDesc, sampling_locations: trtp.TensorDesc,
                       attention_weights: trtp.TensorDesc, spatial_shapes: npt.NDArray[np.int32],
                       outputs: Tuple[trtp.TensorDesc], tactic: int
                       ) -> Tuple[Union[str, bytes], Union[str, bytes], trtp.KernelLaunchParams, trtp.SymIntExprs]:
    v, loc = value.shape_expr, sampling_locations.shape_expr
    heads = _static(v[2], "the number of heads")
    k = compile_ms_deform_attn_ptx(dtype="fp16" if value.dtype == trt.float16 else "fp32",
                                   spatial_shapes=spatial_shapes, heads=heads,
                                   channels=_static(v[3], "the channels per head"),
                                   points=_static(loc[4], "the number of points"), cc=_device_cc(),
                                   ptx_version=ptx_version(cc=_device_cc()))
    launch = trtp.KernelLaunchParams()
    launch.grid_x = trtp.cdiv(loc[1], k.block_queries)
    launch.grid_y = heads
    launch.grid_z = v[0]
    launch.block_x = k.threads
    launch.shared_mem = k.shared_mem
    # Kernel parameters: value, sampling_locations, attention_weights (inputs), then Q, then out (output).
    extra = trtp.SymIntExprs.from_tuple([trtp.SymInt32(loc[1])])
    return k.name, k.ptx, launch, extra
