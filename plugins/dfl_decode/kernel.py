"""The Triton kernel of `zoo::dfl_decode`, its launcher, and its ahead-of-time compilation to PTX.

One program decodes BLOCK cells of one batch item: for each side it loads the (reg_max, BLOCK) logits (coalesced
along cells), takes the softmax expectation in registers, and writes the four box rows; then the class rows in
chunks of CLS_BLOCK channels. TensorRT calls an AOT kernel with (inputs, extra int32 scalars, outputs), so the
runtime parameters are exactly (box, cls, H, W, out); batch comes from the grid, and stride, reg_max, nc and the
tile sizes are `tl.constexpr`s baked into the PTX. The PTX helpers (hidden-parameter stripping) are
plugins.yolo_decode.kernel's.
"""
from __future__ import annotations

import contextlib
from dataclasses import dataclass

import torch
import triton
import triton.language as tl

from plugins.yolo_decode.kernel import ENABLE_FP_FUSION, NUM_WARPS, strip_hidden_params

from .reference import check_attrs, output_shape

BLOCK = 64        # cells per program
CLS_BLOCK = 32    # class channels per step


@triton.jit
def dfl_decode_kernel(box_ptr, cls_ptr, H, W, out_ptr, NC: tl.constexpr, REG_MAX: tl.constexpr,
                      REG_P2: tl.constexpr, STRIDE: tl.constexpr, BLOCK: tl.constexpr, CLS_BLOCK: tl.constexpr):
    """Grid (cdiv(H*W, BLOCK), B)."""
    b = tl.program_id(1).to(tl.int64)
    hw = H * W
    cells = tl.program_id(0) * BLOCK + tl.arange(0, BLOCK)                # [BLOCK]
    live = cells < hw
    bins = tl.arange(0, REG_P2)                                            # [REG_P2]
    mask = (bins < REG_MAX)[:, None] & live[None, :]
    box_base = box_ptr + b * (4 * REG_MAX) * hw
    out_base = out_ptr + b * (4 + NC) * hw

    d_l = tl.zeros([BLOCK], tl.float32)
    d_t = tl.zeros([BLOCK], tl.float32)
    d_r = tl.zeros([BLOCK], tl.float32)
    d_b = tl.zeros([BLOCK], tl.float32)
    for side in tl.static_range(4):
        src = box_base + (side * REG_MAX + bins)[:, None] * hw + cells[None, :]
        logits = tl.load(src, mask=mask, other=0.0).to(tl.float32)
        logits = tl.where((bins < REG_MAX)[:, None], logits, float("-inf"))  # padding bins weigh nothing
        e = tl.exp(logits - tl.max(logits, axis=0)[None, :])
        d = tl.sum(e * bins.to(tl.float32)[:, None], axis=0) / tl.sum(e, axis=0)
        if side == 0:
            d_l = d
        elif side == 1:
            d_t = d
        elif side == 2:
            d_r = d
        else:
            d_b = d

    ax = (cells % W).to(tl.float32) + 0.5
    ay = (cells // W).to(tl.float32) + 0.5
    x1 = ax - d_l
    y1 = ay - d_t
    x2 = ax + d_r
    y2 = ay + d_b
    tl.store(out_base + 0 * hw + cells, (x1 + x2) / 2 * STRIDE, mask=live)
    tl.store(out_base + 1 * hw + cells, (y1 + y2) / 2 * STRIDE, mask=live)
    tl.store(out_base + 2 * hw + cells, (x2 - x1) * STRIDE, mask=live)
    tl.store(out_base + 3 * hw + cells, (y2 - y1) * STRIDE, mask=live)

    channels = tl.arange(0, CLS_BLOCK)
    for c0 in tl.static_range(0, NC, CLS_BLOCK):
        c = c0 + channels
        m = (c < NC)[:, None] & live[None, :]
        logits = tl.load(cls_ptr + b * NC * hw + c[:, None] * hw + cells[None, :], mask=m, other=0.0)
        tl.store(out_base + (4 + c)[:, None] * hw + cells[None, :], tl.sigmoid(logits.to(tl.float32)), mask=m)


def _constexprs(stride: int, reg_max: int, num_classes: int) -> dict:
    return dict(NC=num_classes, REG_MAX=reg_max, REG_P2=max(2, triton.next_power_of_2(reg_max)), STRIDE=stride,
                BLOCK=BLOCK, CLS_BLOCK=CLS_BLOCK)


def interpreting() -> bool:
    """True when `TRITON_INTERPRET=1` was set before triton was imported (kernels then run on the CPU)."""
    return not isinstance(dfl_decode_kernel, triton.runtime.jit.JITFunction)


def decode_triton(box: torch.Tensor, cls: torch.Tensor, *, stride, reg_max) -> torch.Tensor:
    """Run the kernel on box/cls's device and current stream; same contract as decode_reference."""
    stride, reg_max = check_attrs(stride, reg_max)
    shape = output_shape(tuple(box.shape), tuple(cls.shape), stride=stride, reg_max=reg_max)
    if box.dtype not in (torch.float32, torch.float16) or cls.dtype != box.dtype:
        raise ValueError(f"dfl_decode: inputs must both be float32 or both float16, got {box.dtype}, {cls.dtype}")
    if not box.is_cuda and not interpreting():
        raise RuntimeError("dfl_decode: the Triton kernel needs CUDA tensors (or TRITON_INTERPRET=1 set before "
                           "triton is imported, to run it on the CPU)")
    box, cls = box.contiguous(), cls.contiguous()
    out = torch.empty(shape, dtype=torch.float32, device=box.device)
    if out.numel() == 0:
        return out
    b, _, h, w = box.shape
    meta = _constexprs(stride, reg_max, cls.shape[1])
    grid = (triton.cdiv(h * w, BLOCK), b)
    with torch.cuda.device(box.device) if box.is_cuda else contextlib.nullcontext():
        dfl_decode_kernel[grid](box, cls, h, w, out, **meta, num_warps=NUM_WARPS, enable_fp_fusion=ENABLE_FP_FUSION)
    return out


@dataclass(frozen=True)
class CompiledKernel:
    name: str
    ptx: str
    threads: int
    shared_mem: int
    block_cells: int


def compile_decode_ptx(*, in_dtype: str, stride, reg_max, num_classes: int, cc: int,
                       ptx_version: int | None = None) -> CompiledKernel:
    """PTX for compute capability `cc` with parameters (box, cls: *in_dtype, H, W: i32, out: *fp32), TensorRT's
    AOT order. Needs triton without the interpreter, but no GPU. `ptx_version` (e.g. 90 for ISA 9.0) caps the
    PTX ISA version for older drivers."""
    if in_dtype not in ("fp32", "fp16"):
        raise ValueError(f"dfl_decode: input dtype must be 'fp32' or 'fp16', got {in_dtype!r}")
    if interpreting():
        raise RuntimeError("dfl_decode: AOT compilation needs triton imported without TRITON_INTERPRET=1")
    stride, reg_max = check_attrs(stride, reg_max)
    from triton.backends.compiler import GPUTarget

    meta = _constexprs(stride, reg_max, int(num_classes))
    signature = {"box_ptr": f"*{in_dtype}", "cls_ptr": f"*{in_dtype}", "H": "i32", "W": "i32", "out_ptr": "*fp32",
                 **{k: "constexpr" for k in meta}}
    src = triton.compiler.ASTSource(fn=dfl_decode_kernel, signature=signature, constexprs=meta)
    options = {"num_warps": NUM_WARPS, "enable_fp_fusion": ENABLE_FP_FUSION}
    if ptx_version is not None:
        options["ptx_version"] = int(ptx_version)
    compiled = triton.compile(src, target=GPUTarget("cuda", int(cc), 32), options=options)
    md = compiled.metadata
    scratch = getattr(md, "global_scratch_size", 0) + getattr(md, "profile_scratch_size", 0)
    ptx = strip_hidden_params(compiled.asm["ptx"], md.name, 5, scratch_bytes=scratch)
    return CompiledKernel(name=md.name, ptx=ptx, threads=md.num_warps * 32, shared_mem=md.shared, block_cells=BLOCK)
