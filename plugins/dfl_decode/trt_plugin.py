"""`zoo::dfl_decode` as a TensorRT `tensorrt.plugin` (QDP) op with an ahead-of-time implementation.

Importing this module registers the op with TensorRT (once per process). It needs `tensorrt` (10.9+ for AOT) and
`triton`; `plugins.dfl_decode.add_dfl_decode` imports it only when it builds on a real TensorRT network. The engine
then carries the kernel's PTX and runs with no Python, no plugin library and no registration at load time. Set
The PTX ISA version is capped at what this machine's driver accepts (`plugins.ptx`); set ZOO_PTX_VERSION (e.g. 90)
for the driver of another machine that will run the engine.

No `from __future__ import annotations` here: `tensorrt.plugin` inspects the annotations as objects.
"""
from typing import List, Tuple, Union

import tensorrt as trt
import tensorrt.plugin as trtp

from ..ptx import ptx_version
from .kernel import compile_decode_ptx
from .reference import OP_ID, check_attrs


def _device_cc() -> int:
    import torch

    if not torch.cuda.is_available():
        raise RuntimeError("dfl_decode: compiling the AOT plugin needs the CUDA device the engine is built for")
    major, minor = torch.cuda.get_device_capability()
    return major * 10 + minor


@trtp.register(OP_ID)
def dfl_decode_desc(box: trtp.TensorDesc, cls: trtp.TensorDesc, stride: int, reg_max: int) -> trtp.TensorDesc:
    _, reg_max = check_attrs(stride, reg_max)
    e, c = box.shape_expr, cls.shape_expr
    if not e[1].is_fake and e[1].is_constant and e[1].constant_value() != 4 * reg_max:
        raise ValueError(f"dfl_decode: box input has {e[1].constant_value()} channels, expected {4 * reg_max}")
    # expression on the left: ShapeExpr has no reflected operators
    return trtp.from_shape_expr((e[0], c[1] + 4, e[2] * e[3]), dtype=trt.float32)


@trtp.autotune(OP_ID)
def dfl_decode_autotune(box: trtp.TensorDesc, cls: trtp.TensorDesc,
                        outputs: Tuple[trtp.TensorDesc]) -> List[trtp.AutoTuneCombination]:
    # FP32 or FP16 logits in (an FP16 engine needs no cast before it); FP32 boxes and scores out
    return [trtp.AutoTuneCombination("FP32, FP32, FP32", "LINEAR"),
            trtp.AutoTuneCombination("FP16, FP16, FP32", "LINEAR")]


@trtp.aot_impl(OP_ID)
def dfl_decode_aot(box: trtp.TensorDesc, cls: trtp.TensorDesc, stride: int, reg_max: int,
                   outputs: Tuple[trtp.TensorDesc], tactic: int
                   ) -> Tuple[Union[str, bytes], Union[str, bytes], trtp.KernelLaunchParams, trtp.SymIntExprs]:
    c = cls.shape_expr
    if not c[1].is_constant:
        raise ValueError("dfl_decode: the class count must be static")
    k = compile_decode_ptx(in_dtype="fp16" if box.dtype == trt.float16 else "fp32", stride=stride, reg_max=reg_max,
                           num_classes=c[1].constant_value(), cc=_device_cc(),
                           ptx_version=ptx_version(cc=_device_cc()))
    e = box.shape_expr
    launch = trtp.KernelLaunchParams()
    launch.grid_x = trtp.cdiv(e[2] * e[3], k.block_cells)
    launch.grid_y = e[0]
    launch.block_x = k.threads
    launch.shared_mem = k.shared_mem
    # Kernel parameters: box, cls (inputs), then these int32 scalars, then out (output).
    extra = trtp.SymIntExprs.from_tuple([trtp.SymInt32(e[2]), trtp.SymInt32(e[3])])
    return k.name, k.ptx, launch, extra
