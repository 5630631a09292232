"""The Triton kernel of `zoo::ms_deform_attn`, its launcher, and its ahead-of-time compilation to PTX.

One program computes BLOCK_Q queries of one head of one batch item, all D channels at once: a (BLOCK_Q, BLOCK_D)
tile in FP32 registers. For each level and point it loads the BLOCK_Q sampling locations and weights, and for each
of the four bilinear corners the (BLOCK_Q, D) value rows (D contiguous channels of the corner's cell, masked to zero
for corners outside the map), so the value tensor is read straight from its (B, S, M, D) layout with no transpose.
TensorRT calls an AOT kernel with (inputs, extra int32 scalars, outputs): the runtime parameters are exactly
(value, locations, weights, Q, out); the batch and the head come from the grid, and heads, channels, levels, points
and the levels' shapes and starts are `tl.constexpr`s baked into the PTX (a network's spatial shapes are static).
The PTX helpers (hidden-parameter stripping) are plugins.yolo_decode.kernel's.
"""
from __future__ import annotations

import contextlib
from dataclasses import dataclass

import torch
import triton
import triton.language as tl

from plugins.yolo_decode.kernel import ENABLE_FP_FUSION, NUM_WARPS, strip_hidden_params

from .reference import MAX_LEVELS, check_inputs, level_shapes

BLOCK_Q = 16        # queries per program
MAX_CHANNELS = 256  # channels per head the tile holds


@triton.jit
def _sample_level(acc, value_base, loc_ptr, weight_ptr, row, q_live, channels, d_live,
                  LEVEL: tl.constexpr, H: tl.constexpr, W: tl.constexpr, START: tl.constexpr,
                  LEVELS: tl.constexpr, POINTS: tl.constexpr, HEADS: tl.constexpr, CHANNELS: tl.constexpr):
    """acc + sum over this level's points of weight * bilinear sample, for the (BLOCK_Q, BLOCK_D) tile."""
    for p in tl.static_range(POINTS):
        at = (row * LEVELS + LEVEL) * POINTS + p                                   # [BLOCK_Q] int64
        x = tl.load(loc_ptr + at * 2, mask=q_live, other=0.0).to(tl.float32)
        y = tl.load(loc_ptr + at * 2 + 1, mask=q_live, other=0.0).to(tl.float32)
        a = tl.load(weight_ptr + at, mask=q_live, other=0.0).to(tl.float32)
        # pixel coordinates (grid_sample without align_corners); clamped to [-2, side + 1], where every corner
        # is still outside, so that far-away points cannot overflow the integer conversion
        px = tl.minimum(tl.maximum(x * W - 0.5, -2.0), W + 1.0)
        py = tl.minimum(tl.maximum(y * H - 0.5, -2.0), H + 1.0)
        x0f = tl.floor(px)
        y0f = tl.floor(py)
        fx = px - x0f
        fy = py - y0f
        x0 = x0f.to(tl.int32)
        y0 = y0f.to(tl.int32)
        for corner in tl.static_range(4):
            dx = corner % 2
            dy = corner // 2
            cx = x0 + dx
            cy = y0 + dy
            wx = fx if dx == 1 else 1.0 - fx
            wy = fy if dy == 1 else 1.0 - fy
            inside = q_live & (cx >= 0) & (cx < W) & (cy >= 0) & (cy < H)
            cell = START + cy * W + cx
            v = tl.load(value_base + cell[:, None].to(tl.int64) * (HEADS * CHANNELS) + channels[None, :],
                        mask=inside[:, None] & d_live[None, :], other=0.0).to(tl.float32)
            acc += (a * wx * wy)[:, None] * v
    return acc


@triton.jit
def ms_deform_attn_kernel(value_ptr, loc_ptr, weight_ptr, Q, out_ptr,
                          HEADS: tl.constexpr, CHANNELS: tl.constexpr, CELLS: tl.constexpr, LEVELS: tl.constexpr,
                          POINTS: tl.constexpr, H0: tl.constexpr, W0: tl.constexpr, H1: tl.constexpr,
                          W1: tl.constexpr, H2: tl.constexpr, W2: tl.constexpr, H3: tl.constexpr, W3: tl.constexpr,
                          BLOCK_Q: tl.constexpr, BLOCK_D: tl.constexpr):
    """Grid (cdiv(Q, BLOCK_Q), HEADS, B)."""
    m = tl.program_id(1)
    b = tl.program_id(2).to(tl.int64)
    queries = tl.program_id(0) * BLOCK_Q + tl.arange(0, BLOCK_Q)
    q_live = queries < Q
    channels = tl.arange(0, BLOCK_D)
    d_live = channels < CHANNELS
    row = (b * Q + queries) * HEADS + m                  # [BLOCK_Q]: the (b, q, m) row of locations, weights, out
    value_base = value_ptr + b * CELLS * (HEADS * CHANNELS) + m * CHANNELS
    acc = tl.zeros([BLOCK_Q, BLOCK_D], tl.float32)
    args = (value_base, loc_ptr, weight_ptr, row, q_live, channels, d_live)
    acc = _sample_level(acc, *args, 0, H0, W0, 0, LEVELS, POINTS, HEADS, CHANNELS)
    if LEVELS > 1:
        acc = _sample_level(acc, *args, 1, H1, W1, H0 * W0, LEVELS, POINTS, HEADS, CHANNELS)
    if LEVELS > 2:
        acc = _sample_level(acc, *args, 2, H2, W2, H0 * W0 + H1 * W1, LEVELS, POINTS, HEADS, CHANNELS)
    if LEVELS > 3:
        acc = _sample_level(acc, *args, 3, H3, W3, H0 * W0 + H1 * W1 + H2 * W2, LEVELS, POINTS, HEADS, CHANNELS)
    out = out_ptr + row[:, None] * CHANNELS + channels[None, :]
    tl.store(out, acc.to(out_ptr.dtype.element_ty), mask=q_live[:, None] & d_live[None, :])


def _constexprs(spatial_shapes, heads: int, channels: int, points: int) -> dict:
    levels = level_shapes(spatial_shapes)
    if not 1 <= channels <= MAX_CHANNELS:
        raise ValueError(f"ms_deform_attn: the kernel takes 1..{MAX_CHANNELS} channels per head, got {channels}")
    padded = list(levels) + [(1, 1)] * (MAX_LEVELS - len(levels))  # unused levels: never read (LEVELS guards them)
    sides = {f"{axis}{i}": side for i, (h, w) in enumerate(padded) for axis, side in (("H", h), ("W", w))}
    return dict(HEADS=int(heads), CHANNELS=int(channels), CELLS=sum(h * w for h, w in levels), LEVELS=len(levels),
                POINTS=int(points), **sides, BLOCK_Q=BLOCK_Q, BLOCK_D=max(2, triton.next_power_of_2(int(channels))))


def interpreting() -> bool:
    """True when `TRITON_INTERPRET=1` was set before triton was imported (kernels then run on the CPU)."""
    return not isinstance(ms_deform_attn_kernel, triton.runtime.jit.JITFunction)


def ms_deform_attn_triton(value: torch.Tensor, sampling_locations: torch.Tensor, attention_weights: torch.Tensor,
                          spatial_shapes) -> torch.Tensor:
    """Run the kernel on the inputs' device and current stream; the same contract as ms_deform_attn_reference."""
    levels = check_inputs(value, sampling_locations, attention_weights, spatial_shapes)
    if not value.is_cuda and not interpreting():
        raise RuntimeError("ms_deform_attn: the Triton kernel needs CUDA tensors (or TRITON_INTERPRET=1 set before "
                           "triton is imported, to run it on the CPU)")
    b, _, heads, channels = value.shape
    queries, points = sampling_locations.shape[1], sampling_locations.shape[4]
    meta = _constexprs(levels, heads, channels, points)
    value, loc, weights = (t.contiguous() for t in (value, sampling_locations, attention_weights))
    out = torch.empty((b, queries, heads * channels), dtype=value.dtype, device=value.device)
    if out.numel() == 0:
        return out
    grid = (triton.cdiv(queries, BLOCK_Q), heads, b)
    with torch.cuda.device(value.device) if value.is_cuda else contextlib.nullcontext():
        ms_deform_attn_kernel[grid](value, loc, weights, queries, out, **meta, num_warps=NUM_WARPS,
                                    enable_fp_fusion=ENABLE_FP_FUSION)
    return out


def attention_triton(value, sampling_locations, attention_weights, *, spatial_shapes) -> torch.Tensor:
    """The plugin op's CUDA forward (the reference backend on a GPU): the kernel with the op's keyword attribute."""
    return ms_deform_attn_triton(value, sampling_locations, attention_weights, spatial_shapes)


@dataclass(frozen=True)
class CompiledKernel:
    name: str
    ptx: str
    threads: int
    shared_mem: int
    block_queries: int


def compile_ms_deform_attn_ptx(*, dtype: str, spatial_shapes, heads: int, channels: int, points: int, cc: int,
                               ptx_version: int | None = None) -> CompiledKernel:
    """PTX for compute capability `cc` with parameters (value, locations, weights: *dtype, Q: i32, out: *dtype),
    TensorRT's AOT order. Needs triton without the interpreter, but no GPU. `ptx_version` (e.g. 90 for ISA 9.0) caps
    the PTX ISA version for older drivers."""
    if dtype not in ("fp32", "fp16"):
        raise ValueError(f"ms_deform_attn: dtype must be 'fp32' or 'fp16', got {dtype!r}")
    if interpreting():
        raise RuntimeError("ms_deform_attn: AOT compilation needs triton imported without TRITON_INTERPRET=1")
    from triton.backends.compiler import GPUTarget

    meta = _constexprs(spatial_shapes, heads, channels, points)
    signature = {"value_ptr": f"*{dtype}", "loc_ptr": f"*{dtype}", "weight_ptr": f"*{dtype}", "Q": "i32",
                 "out_ptr": f"*{dtype}", **{k: "constexpr" for k in meta}}
    src = triton.compiler.ASTSource(fn=ms_deform_attn_kernel, signature=signature, constexprs=meta)
    options = {"num_warps": NUM_WARPS, "enable_fp_fusion": ENABLE_FP_FUSION}
    if ptx_version is not None:
        options["ptx_version"] = int(ptx_version)
    compiled = triton.compile(src, target=GPUTarget("cuda", int(cc), 32), options=options)
    md = compiled.metadata
    scratch = getattr(md, "global_scratch_size", 0) + getattr(md, "profile_scratch_size", 0)
    ptx = strip_hidden_params(compiled.asm["ptx"], md.name, 5, scratch_bytes=scratch)
    return CompiledKernel(name=md.name, ptx=ptx, threads=md.num_warps * 32, shared_mem=md.shared,
                          block_queries=BLOCK_Q)
