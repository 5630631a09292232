"""The fused letterbox kernel: uint8 HWC BGR image -> one slot of a float32 NCHW RGB batch, in one pass.

Per output pixel: inside the letterboxed image area, a bilinear sample of the source with OpenCV's INTER_LINEAR
convention (src = (dst + 0.5) * (src_size / new_size) - 0.5 per axis, clamped to the edge), rounded to the
nearest grey level as cv2 does for uint8 images; outside it, the pad value 114. Then BGR -> RGB, / 255, and the
CHW write. The geometry (new size, padding) is the CPU letterbox's own, passed in; see `preprocess_batch`.
"""
from __future__ import annotations

import contextlib
from typing import Sequence

import numpy as np
import torch
import triton
import triton.language as tl

from .geometry import PAD_VALUE, LetterboxParams, check_image, letterbox_params

BLOCK = 1024
NUM_WARPS = 4
# FMA contraction pinned off: the kernel then rounds like the CPU letterbox whatever Triton's default (it flips in
# Triton 3.10), so the one-grey-level bound against the CPU letterbox holds on every Triton version.
ENABLE_FP_FUSION = False


# Image sizes and offsets change with every image: no specialisation on their values (a recompile per new size).
@triton.jit(do_not_specialize=["index", "src_h", "src_w", "new_h", "new_w", "pad_top", "pad_left", "H", "W"])
def letterbox_kernel(src_ptr, dst_ptr, index, src_h, src_w, new_h, new_w, pad_top, pad_left, scale_y, scale_x,
                     H, W, PAD: tl.constexpr, BLOCK: tl.constexpr):
    """Grid (cdiv(H*W, BLOCK),): each program writes BLOCK pixels of all three planes of slot `index`."""
    hw = H * W
    p = tl.program_id(0) * BLOCK + tl.arange(0, BLOCK)
    valid = p < hw
    iy = p // W - pad_top
    ix = p % W - pad_left
    inside = valid & (iy >= 0) & (iy < new_h) & (ix >= 0) & (ix < new_w)

    fy = tl.maximum((iy.to(tl.float32) + 0.5) * scale_y - 0.5, 0.0)
    fx = tl.maximum((ix.to(tl.float32) + 0.5) * scale_x - 0.5, 0.0)
    y0f = tl.floor(fy)
    x0f = tl.floor(fx)
    wy = fy - y0f
    wx = fx - x0f
    y0 = tl.minimum(y0f.to(tl.int32), src_h - 1)
    x0 = tl.minimum(x0f.to(tl.int32), src_w - 1)
    y1 = tl.minimum(y0 + 1, src_h - 1)
    x1 = tl.minimum(x0 + 1, src_w - 1)
    r0 = y0 * src_w
    r1 = y1 * src_w

    dst = dst_ptr + index.to(tl.int64) * 3 * hw + p
    for c in tl.static_range(3):
        ch = 2 - c  # BGR source, RGB destination
        p00 = tl.load(src_ptr + (r0 + x0) * 3 + ch, mask=inside, other=0).to(tl.float32)
        p01 = tl.load(src_ptr + (r0 + x1) * 3 + ch, mask=inside, other=0).to(tl.float32)
        p10 = tl.load(src_ptr + (r1 + x0) * 3 + ch, mask=inside, other=0).to(tl.float32)
        p11 = tl.load(src_ptr + (r1 + x1) * 3 + ch, mask=inside, other=0).to(tl.float32)
        top = p00 * (1.0 - wx) + p01 * wx
        bottom = p10 * (1.0 - wx) + p11 * wx
        v = tl.floor(top * (1.0 - wy) + bottom * wy + 0.5)
        v = tl.where(inside, v, PAD)
        tl.store(dst + c * hw, tl.div_rn(v, 255.0), mask=valid)  # correctly rounded, as numpy's divide


def letterbox_triton(image_u8: torch.Tensor, out: torch.Tensor, index: int, params: LetterboxParams) -> None:
    """Letterbox one (h, w, 3) uint8 BGR image into out[index] ((B, 3, H, W) float32, contiguous), on the current
    stream of out's device (or on the CPU under TRITON_INTERPRET=1). Nothing is shared between calls."""
    if image_u8.dtype != torch.uint8 or image_u8.dim() != 3 or image_u8.shape[2] != 3:
        raise ValueError(f"letterbox: image must be uint8 (h, w, 3) BGR, got {image_u8.dtype} "
                         f"{tuple(image_u8.shape)}")
    if out.dtype != torch.float32 or out.dim() != 4 or out.shape[1] != 3 or not out.is_contiguous():
        raise ValueError(f"letterbox: out must be a contiguous float32 (B, 3, H, W) tensor, got {out.dtype} "
                         f"{tuple(out.shape)}")
    if image_u8.device != out.device:
        raise ValueError(f"letterbox: image is on {image_u8.device}, out on {out.device}")
    if not 0 <= index < out.shape[0]:
        raise IndexError(f"letterbox: slot {index} is outside the batch of {out.shape[0]}")
    src_h, src_w = int(image_u8.shape[0]), int(image_u8.shape[1])
    h, w = int(out.shape[2]), int(out.shape[3])
    new_w, new_h, left, top = int(params.new_w), int(params.new_h), int(params.pad_left), int(params.pad_top)
    if src_h < 1 or src_w < 1 or new_w < 1 or new_h < 1:
        raise ValueError(f"letterbox: empty image or resize: image {src_w}x{src_h}, resized {new_w}x{new_h}")
    if left < 0 or top < 0 or left + new_w > w or top + new_h > h:
        raise ValueError(f"letterbox: {new_w}x{new_h} at ({left}, {top}) does not fit the {w}x{h} input")
    if src_h * src_w * 3 >= 2**31:
        raise ValueError(f"letterbox: image {src_w}x{src_h} is too large (over 2**31 bytes)")
    image_u8 = image_u8.contiguous()
    grid = (triton.cdiv(h * w, BLOCK),)
    with torch.cuda.device(out.device) if out.is_cuda else contextlib.nullcontext():  # launch on out's GPU
        letterbox_kernel[grid](image_u8, out, index, src_h, src_w, new_h, new_w, top, left,
                               src_h / new_h, src_w / new_w, h, w, PAD=PAD_VALUE, BLOCK=BLOCK, num_warps=NUM_WARPS,
                               enable_fp_fusion=ENABLE_FP_FUSION)


def preprocess_batch(images: Sequence[np.ndarray], size, device) -> tuple[torch.Tensor, list[LetterboxParams]]:
    """Letterbox a list of uint8 BGR images (any sizes) into one (B, 3, H, W) float32 tensor on `device`: the GPU
    twin of `zoo.vision.letterbox.preprocess` (pad 114, no auto), `size` an int or (h, w) as there.

    Returns the tensor and each image's `LetterboxParams`, computed by the CPU letterbox's own `letterbox_params`.
    Each image is uploaded into its own tensor and the kernels are queued on the current stream with no
    synchronisation; there is no staging buffer shared between images or calls, so the batch race of tensorrtx's
    preprocess.cu (one static pinned buffer reused per image) cannot happen. Pinned uploads go through PyTorch's
    caching host allocator, which does not hand a block out again before the copy that reads it has finished.
    """
    device = torch.device(device)
    params = []
    batch = None
    for i, image in enumerate(images):
        check_image(image)
        p = letterbox_params(image.shape[:2], size)
        if batch is None:
            batch = torch.empty((len(images), 3, p.out_h, p.out_w), dtype=torch.float32, device=device)
        src = torch.from_numpy(np.ascontiguousarray(image))
        if device.type == "cuda":
            src = src.pin_memory().to(device, non_blocking=True)
        letterbox_triton(src, batch, i, p)
        params.append(p)
    if batch is None:
        raise ValueError("letterbox: no images to preprocess")
    return batch, params
