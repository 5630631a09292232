"""`zoo::yolo_decode` as a TensorRT `tensorrt.plugin` (QDP) op with an ahead-of-time implementation.

Importing this module registers the op with TensorRT (once per process: a second `trtp.register` of the same id
raises, and Python caches the module). It needs `tensorrt` (10.9+ for AOT; written against 10.16 and 11.x) and
`triton`; `plugins.yolo_decode.add_decode` imports it only when it builds on a real TensorRT network.

The AOT implementation compiles the Triton kernel of `kernel.py` to PTX for the GPU of the building process; the
engine then carries the kernel and runs with no Python, no plugin library and no registration at load time.
Attributes are not serialized with an AOT plugin: anchors, stride and num_outputs are constants inside the PTX.

The PTX ISA version is capped at what this machine's driver accepts (`plugins.ptx`); set ZOO_PTX_VERSION (e.g. 85)
when the engine will run on a machine whose driver is older than this one's.

No `from __future__ import annotations` here: `tensorrt.plugin` inspects the annotations as objects.
"""
from typing import List, Tuple, Union

import numpy as np
import numpy.typing as npt
import tensorrt as trt
import tensorrt.plugin as trtp

from ..ptx import ptx_version
from .kernel import compile_decode_ptx
from .reference import OP_ID, check_attrs


def _device_cc() -> int:
    import torch

    if not torch.cuda.is_available():
        raise RuntimeError("yolo_decode: compiling the AOT plugin needs the CUDA device the engine is built for")
    major, minor = torch.cuda.get_device_capability()
    return major * 10 + minor


@trtp.register(OP_ID)
def yolo_decode_desc(feat: trtp.TensorDesc, stride: int, anchors: npt.NDArray[np.float32],
                     num_outputs: int) -> trtp.TensorDesc:
    _, anchors, num_outputs = check_attrs(stride, anchors, num_outputs)
    na = anchors.size // 2
    e = feat.shape_expr
    if not e[1].is_fake and e[1].is_constant and e[1].constant_value() != na * num_outputs:
        raise ValueError(f"yolo_decode: input has {e[1].constant_value()} channels, but {na} anchors x num_outputs "
                         f"{num_outputs} = {na * num_outputs}")
    # expression on the left: ShapeExpr has no reflected operators
    return trtp.from_shape_expr((e[0], e[2] * e[3] * na, num_outputs), dtype=trt.float32)


@trtp.autotune(OP_ID)
def yolo_decode_autotune(feat: trtp.TensorDesc, outputs: Tuple[trtp.TensorDesc]) -> List[trtp.AutoTuneCombination]:
    # The kernel reads FP32 or FP16 (an FP16 engine needs no cast before it) and always writes FP32 boxes.
    return [trtp.AutoTuneCombination("FP32, FP32", "LINEAR"), trtp.AutoTuneCombination("FP16, FP32", "LINEAR")]


@trtp.aot_impl(OP_ID)
def yolo_decode_aot(feat: trtp.TensorDesc, stride: int, anchors: npt.NDArray[np.float32], num_outputs: int,
                    outputs: Tuple[trtp.TensorDesc], tactic: int
                    ) -> Tuple[Union[str, bytes], Union[str, bytes], trtp.KernelLaunchParams, trtp.SymIntExprs]:
    k = compile_decode_ptx(in_dtype="fp16" if feat.dtype == trt.float16 else "fp32", stride=stride,
                           anchors=anchors, num_outputs=num_outputs, cc=_device_cc(),
                           ptx_version=ptx_version(cc=_device_cc()))
    e = feat.shape_expr
    launch = trtp.KernelLaunchParams()
    launch.grid_x = trtp.cdiv(e[2] * e[3], k.block_cells)
    launch.grid_y = np.asarray(anchors).size // 2
    launch.grid_z = e[0]
    launch.block_x = k.threads
    launch.shared_mem = k.shared_mem
    # Kernel parameters: feat (input), then these int32 scalars, then out (output).
    extra = trtp.SymIntExprs.from_tuple([trtp.SymInt32(e[2]), trtp.SymInt32(e[3])])
    return k.name, k.ptx, launch, extra
