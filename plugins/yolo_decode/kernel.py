"""The Triton kernel of `zoo::yolo_decode`, its launcher, and its ahead-of-time compilation to PTX.

One kernel serves both uses:
- `decode_triton` launches it on CUDA tensors, or on CPU tensors under `TRITON_INTERPRET=1` (the tests);
- `compile_decode_ptx` compiles it to PTX for the TensorRT AOT plugin (`trt_plugin.py`), which embeds it in the
  engine. TensorRT calls an AOT kernel with (input pointers, extra int32 scalars, output pointers), so the kernel's
  runtime parameters are exactly (feat, H, W, out); batch and anchor come from the grid, and everything else
  (anchors, stride, num_outputs, tile size) is a `tl.constexpr` baked into the PTX.
"""
from __future__ import annotations

import contextlib
import re
from dataclasses import dataclass

import numpy as np
import torch
import triton
import triton.language as tl

from .reference import check_attrs, output_shape

NUM_WARPS = 4
# FMA contraction off: the kernel then rounds like the PyTorch reference, and Triton 3.10 makes this the default.
ENABLE_FP_FUSION = False


@triton.jit
def yolo_decode_kernel(feat_ptr, H, W, out_ptr,
                       NO: tl.constexpr, NO_P2: tl.constexpr, NA: tl.constexpr, STRIDE: tl.constexpr,
                       ANCHORS: tl.constexpr, BLOCK: tl.constexpr):
    """Grid (cdiv(H*W, BLOCK), NA, B). Program (i, a, b) decodes cells [i*BLOCK, (i+1)*BLOCK) of anchor a of batch
    item b: reads the no channels of each cell (coalesced along cells), writes whole rows (coalesced along fields).
    Every output element of the grid's cells is written; nothing is counted or filtered."""
    a = tl.program_id(1)
    b = tl.program_id(2).to(tl.int64)
    hw = H * W
    cells = tl.program_id(0) * BLOCK + tl.arange(0, BLOCK)          # [BLOCK]
    field = tl.arange(0, NO_P2)                                      # [NO_P2]
    mask = (cells < hw)[:, None] & (field < NO)[None, :]

    src = feat_ptr + b * (NA * NO) * hw + (a * NO + field)[None, :] * hw + cells[:, None]
    s = tl.sigmoid(tl.load(src, mask=mask, other=0.0).to(tl.float32))

    # The anchor's pixel (w, h): a compile-time table, selected by the program's anchor index.
    aw = 0.0
    ah = 0.0
    for i in tl.static_range(NA):
        aw = tl.where(a == i, ANCHORS[2 * i], aw)
        ah = tl.where(a == i, ANCHORS[2 * i + 1], ah)

    gx = (cells % W).to(tl.float32)[:, None] - 0.5
    gy = (cells // W).to(tl.float32)[:, None] - 0.5
    f = field[None, :]
    s2 = s * 2.0
    xy = (s2 + tl.where(f == 0, gx, gy)) * STRIDE
    wh = s2 * s2 * tl.where(f == 2, aw, ah)
    val = tl.where(f < 2, xy, tl.where(f < 4, wh, s))

    dst = out_ptr + b * (NA * NO) * hw + (a * hw + cells)[:, None] * NO + f
    tl.store(dst, val, mask=mask)


def tile(num_outputs: int) -> tuple[int, int]:
    """(BLOCK cells, NO_P2 fields) of one program: about 4096 elements, fields padded to a power of two."""
    no_p2 = triton.next_power_of_2(num_outputs)
    return max(16, 4096 // no_p2), no_p2


def _constexprs(stride: int, anchors: np.ndarray, num_outputs: int) -> dict:
    block, no_p2 = tile(num_outputs)
    return dict(NO=num_outputs, NO_P2=no_p2, NA=anchors.size // 2, STRIDE=stride,
                ANCHORS=tuple(float(v) for v in anchors), BLOCK=block)


def interpreting() -> bool:
    """True when `TRITON_INTERPRET=1` was set before triton was imported (kernels then run on the CPU)."""
    return not isinstance(yolo_decode_kernel, triton.runtime.jit.JITFunction)


def decode_triton(feat: torch.Tensor, *, stride, anchors, num_outputs) -> torch.Tensor:
    """Run the kernel: (B, na*no, H, W) FP32 or FP16 -> (B, na*H*W, no) FP32, on feat's device and current stream."""
    stride, anchors, num_outputs = check_attrs(stride, anchors, num_outputs)
    shape = output_shape(tuple(feat.shape), stride=stride, anchors=anchors, num_outputs=num_outputs)
    if feat.dtype not in (torch.float32, torch.float16):
        raise ValueError(f"yolo_decode: input must be float32 or float16, got {feat.dtype}")
    if not feat.is_cuda and not interpreting():
        raise RuntimeError("yolo_decode: the Triton kernel needs a CUDA tensor (or TRITON_INTERPRET=1 set before "
                           "triton is imported, to run it on the CPU)")
    feat = feat.contiguous()
    out = torch.empty(shape, dtype=torch.float32, device=feat.device)
    b, _, h, w = feat.shape
    if out.numel() == 0:
        return out
    meta = _constexprs(stride, anchors, num_outputs)
    grid = (triton.cdiv(h * w, meta["BLOCK"]), meta["NA"], b)
    with torch.cuda.device(feat.device) if feat.is_cuda else contextlib.nullcontext():  # launch on feat's GPU
        yolo_decode_kernel[grid](feat, h, w, out, **meta, num_warps=NUM_WARPS, enable_fp_fusion=ENABLE_FP_FUSION)
    return out


# ------------------------------------------------------------------------------------------------ AOT (PTX)

@dataclass(frozen=True)
class CompiledKernel:
    name: str          # the PTX entry point
    ptx: str
    threads: int       # block size the PTX requires (.reqntid)
    shared_mem: int    # dynamic shared memory, bytes
    block_cells: int   # cells per program: grid_x = cdiv(H*W, block_cells)


def compile_decode_ptx(*, in_dtype: str, stride, anchors, num_outputs, cc: int,
                       ptx_version: int | None = None) -> CompiledKernel:
    """Compile the kernel for one level to PTX for compute capability `cc` (e.g. 90), with parameters
    (feat: *in_dtype, H: i32, W: i32, out: *fp32) in TensorRT's AOT order. `in_dtype` is "fp32" or "fp16".

    Needs triton without the interpreter (not `TRITON_INTERPRET=1`), but no GPU. `ptx_version` (e.g. 85 for
    PTX ISA 8.5) lowers the PTX ISA version below what Triton's bundled CUDA emits, for older drivers.
    """
    if in_dtype not in ("fp32", "fp16"):
        raise ValueError(f"yolo_decode: input dtype must be 'fp32' or 'fp16', got {in_dtype!r}")
    if interpreting():
        raise RuntimeError("yolo_decode: AOT compilation needs triton imported without TRITON_INTERPRET=1")
    stride, anchors, num_outputs = check_attrs(stride, anchors, num_outputs)
    from triton.backends.compiler import GPUTarget

    meta = _constexprs(stride, anchors, num_outputs)
    signature = {"feat_ptr": f"*{in_dtype}", "H": "i32", "W": "i32", "out_ptr": "*fp32",
                 **{k: "constexpr" for k in meta}}
    src = triton.compiler.ASTSource(fn=yolo_decode_kernel, signature=signature, constexprs=meta)
    options = {"num_warps": NUM_WARPS, "enable_fp_fusion": ENABLE_FP_FUSION}
    if ptx_version is not None:
        options["ptx_version"] = int(ptx_version)
    compiled = triton.compile(src, target=GPUTarget("cuda", int(cc), 32), options=options)
    md = compiled.metadata
    ptx = strip_hidden_params(compiled.asm["ptx"], md.name, 4,
                              scratch_bytes=getattr(md, "global_scratch_size", 0) + getattr(md, "profile_scratch_size", 0))
    return CompiledKernel(name=md.name, ptx=ptx, threads=md.num_warps * 32, shared_mem=md.shared,
                          block_cells=meta["BLOCK"])


def _entry(ptx: str, name: str) -> tuple[re.Match, list[str]]:
    m = re.search(r"\.entry\s+" + re.escape(name) + r"\s*\(([^)]*)\)", ptx)
    if m is None:
        raise ValueError(f"no .entry {name} in the PTX")
    return m, [p.strip() for p in m.group(1).split(",") if p.strip()]


def entry_params(ptx: str, name: str) -> list[str]:
    """The parameter declarations of PTX entry `name`, in order."""
    return _entry(ptx, name)[1]


def strip_hidden_params(ptx: str, name: str, n_params: int, *, scratch_bytes: int = 0) -> str:
    """Remove the pointer parameters Triton (3.3+) appends after the user's (global and profile scratch).

    TensorRT launches an AOT kernel with exactly its inputs, extra scalars and outputs, so a trailing parameter
    would be read from beyond TensorRT's argument array. They are dropped only when the kernel needs no scratch
    memory and never reads them; anything else is an error, not a silent launch with garbage pointers.
    """
    m, params = _entry(ptx, name)
    if len(params) < n_params:
        raise ValueError(f"PTX entry {name} has {len(params)} parameters, expected at least {n_params}")
    hidden = params[n_params:]
    if not hidden:
        return ptx
    if scratch_bytes:
        raise RuntimeError(f"kernel {name} needs {scratch_bytes} bytes of Triton scratch memory, which a TensorRT "
                           f"AOT plugin cannot provide")
    body = ptx[m.end():]
    for p in hidden:
        ident = p.split()[-1]
        if re.search(r"\b" + re.escape(ident) + r"\b", body):
            raise RuntimeError(f"kernel {name} reads its hidden parameter {ident}; it cannot run as an AOT plugin")
    kept = ",\n".join("\t" + p for p in params[:n_params])
    return ptx[:m.start(1)] + "\n" + kept + "\n" + ptx[m.end(1):]
