"""GPU pre-processing: the letterbox of `zoo.vision.letterbox` (resize with cv2's INTER_LINEAR sampling, pad 114,
BGR->RGB, /255, HWC->CHW) fused into one Triton kernel that writes a slot of the float32 NCHW input batch.

    batch, params = preprocess_batch(images_bgr, 640, "cuda")   # == zoo.vision.letterbox.preprocess, on the GPU

The geometry (resized size, padding) comes from the CPU path's own `letterbox_params`, so the two cannot disagree
on where the image lies; tests/test_letterbox_kernel.py holds the kernel within one grey level of the CPU path
(and equal to it wherever the interpolated value rounds the same way). `kernel.py` imports triton; this package
itself does not, until one of the names below is used.
"""
__all__ = ["letterbox_triton", "preprocess_batch"]


def __getattr__(name: str):
    if name in __all__:
        from . import kernel

        return getattr(kernel, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
