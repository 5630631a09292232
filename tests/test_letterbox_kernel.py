"""The fused letterbox kernel (under the Triton interpreter) against the CPU pre-processing of zoo.vision.letterbox:
within one grey level (cv2's INTER_LINEAR works in 11-bit fixed point, the kernel in float), padding exactly 114/255
in exactly the same places, batch slots independent. On a GPU, the compiled kernel against the same."""
# TRITON_INTERPRET is conftest.py's to set (not in the fresh process that runs a GPU test here)

from pathlib import Path

import numpy as np
import pytest
import torch

from zoo.vision.letterbox import letterbox_params, preprocess

ROOT = Path(__file__).resolve().parents[1]
ONE_LEVEL = 1 / 255 + 1e-6  # one grey level, plus the float32 rounding of the two quotients
PAD = np.float32(114) / np.float32(255)


def _triton_reason() -> str | None:
    try:
        import triton  # noqa: F401
    except ImportError as e:
        return f"triton is not installed ({e}); `pip install triton` or `make setup`"
    from plugins.letterbox import kernel
    if isinstance(kernel.letterbox_kernel, triton.runtime.jit.JITFunction):
        return "triton was imported before TRITON_INTERPRET=1 was set, so kernels cannot run on the CPU"
    return None


_WHY = _triton_reason()
pytestmark = pytest.mark.skipif(_WHY is not None, reason=_WHY or "")


def image(h, w, seed=0):
    return np.random.default_rng(seed).integers(0, 256, (h, w, 3), dtype=np.uint8)


def pad_mask(p, out_h, out_w) -> np.ndarray:
    inside = np.zeros((out_h, out_w), dtype=bool)
    inside[p.pad_top:p.pad_top + p.new_h, p.pad_left:p.pad_left + p.new_w] = True
    return ~inside


CASES = [  # (image h, w), network input size
    ((37, 53), 64),          # smaller than the input, landscape
    ((128, 200), 64),        # larger
    ((100, 30), (64, 48)),   # portrait into a non-square input
    ((5, 9), 64),            # tiny, odd
    ((31, 31), (48, 64)),    # odd square into a non-square input
    ((64, 64), 64),          # already the input size: no resize
    ((48, 96), (32, 64)),    # exact 2x downscale, no padding
]


@pytest.mark.parametrize("hw,size", CASES, ids=[f"{h}x{w}->{s}" for (h, w), s in CASES])
def test_kernel_matches_cpu_letterbox(hw, size):
    from plugins.letterbox import preprocess_batch

    img = image(*hw, seed=hw[0] * 1000 + hw[1])
    got, params = preprocess_batch([img], size, "cpu")
    expected, cpu_params = preprocess([img], size)
    assert params == cpu_params
    got = got.numpy()
    assert got.shape == expected.shape and got.dtype == np.float32
    assert np.abs(got - expected).max() <= ONE_LEVEL
    pad = pad_mask(params[0], *expected.shape[2:])
    assert np.all(expected[0][:, pad] == PAD) and np.all(got[0][:, pad] == PAD)
    if (params[0].new_w, params[0].new_h) == hw[::-1]:
        np.testing.assert_array_equal(got, expected)  # no resampling: exactly the CPU path


def test_values_are_whole_grey_levels_in_rgb_order():
    """A flat BGR colour comes out as its RGB planes, exactly c/255 (the CPU path's correctly rounded quotient)."""
    from plugins.letterbox import preprocess_batch

    img = np.empty((20, 30, 3), dtype=np.uint8)
    img[...] = (10, 128, 250)  # B, G, R
    got, (p,) = preprocess_batch([img], 64, "cpu")
    inside = ~pad_mask(p, 64, 64)
    for plane, level in zip(got[0].numpy(), (250, 128, 10)):
        assert np.all(plane[inside] == np.float32(level) / np.float32(255))


def test_batch_slots_are_independent():
    from plugins.letterbox import preprocess_batch

    imgs = [image(37, 53, 1), image(90, 40, 2), image(64, 64, 3), image(7, 120, 4)]
    batch, params = preprocess_batch(imgs, (48, 64), "cpu")
    expected, cpu_params = preprocess(imgs, (48, 64))
    assert params == cpu_params
    assert np.abs(batch.numpy() - expected).max() <= ONE_LEVEL
    for i, img in enumerate(imgs):
        alone, _ = preprocess_batch([img], (48, 64), "cpu")
        torch.testing.assert_close(batch[i:i + 1], alone, rtol=0, atol=0)


def test_kernel_writes_only_its_slot():
    from plugins.letterbox import letterbox_triton

    out = torch.full((3, 3, 32, 32), float("nan"))
    img = image(20, 40)
    letterbox_triton(torch.from_numpy(img), out, 1, letterbox_params(img.shape[:2], 32))
    assert torch.isnan(out[0]).all() and torch.isnan(out[2]).all() and not torch.isnan(out[1]).any()


def test_bad_inputs_are_named():
    from plugins.letterbox import letterbox_triton, preprocess_batch

    out = torch.empty((2, 3, 32, 32))
    img = image(20, 40)
    p = letterbox_params(img.shape[:2], 32)
    with pytest.raises(ValueError, match="uint8"):
        letterbox_triton(torch.from_numpy(img).float(), out, 0, p)
    with pytest.raises(IndexError, match="slot 2"):
        letterbox_triton(torch.from_numpy(img), out, 2, p)
    with pytest.raises(ValueError, match="does not fit"):
        letterbox_triton(torch.from_numpy(img), out, 0, letterbox_params(img.shape[:2], 64))
    with pytest.raises(ValueError, match="float32"):
        letterbox_triton(torch.from_numpy(img), out.half(), 0, p)
    with pytest.raises(ValueError, match="BGR uint8"):
        preprocess_batch([img[..., 0]], 32, "cpu")
    with pytest.raises(ValueError, match="no images"):
        preprocess_batch([], 32, "cpu")



def test_kernel_compiles_for_a_gpu(run_fresh):
    """The interpreter accepts code the compiler rejects; compiling to PTX needs no GPU, so do it here."""
    proc = run_fresh("""
        import triton
        from triton.backends.compiler import GPUTarget
        from plugins.letterbox.kernel import BLOCK, ENABLE_FP_FUSION, NUM_WARPS, PAD_VALUE, letterbox_kernel
        ints = ["index", "src_h", "src_w", "new_h", "new_w", "pad_top", "pad_left"]
        sig = {"src_ptr": "*u8", "dst_ptr": "*fp32", **{k: "i32" for k in ints}, "scale_y": "fp32", "scale_x": "fp32",
               "H": "i32", "W": "i32", "PAD": "constexpr", "BLOCK": "constexpr"}
        src = triton.compiler.ASTSource(fn=letterbox_kernel, signature=sig, constexprs={"PAD": PAD_VALUE, "BLOCK": BLOCK})
        compiled = triton.compile(src, target=GPUTarget("cuda", 90, 32),
                                  options={"num_warps": NUM_WARPS, "enable_fp_fusion": ENABLE_FP_FUSION})
        print(compiled.metadata.name, "div.rn.f32" in compiled.asm["ptx"], "fma.rn.f32" in compiled.asm["ptx"])
    """, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert proc.stdout.split() == ["letterbox_kernel", "True", "False"]  # pinned: no contracted multiply-adds


def test_the_launch_pins_fp_fusion(monkeypatch):
    """Triton's default for enable_fp_fusion changes between versions: the launcher must pass it explicitly."""
    import plugins.letterbox.kernel as kernel
    seen = {}

    class Spy:
        def __getitem__(self, grid):
            return lambda *args, **kwargs: seen.update(kwargs)

    monkeypatch.setattr(kernel, "letterbox_kernel", Spy())
    image = np.zeros((10, 20, 3), np.uint8)
    kernel.preprocess_batch([image], 32, "cpu")
    assert seen["enable_fp_fusion"] is False and kernel.ENABLE_FP_FUSION is False


@pytest.mark.cuda
def test_kernel_on_cuda_matches_cpu_letterbox(run_fresh):
    if not torch.cuda.is_available():
        pytest.skip("no CUDA device visible to PyTorch (CPU build of torch, or no GPU)")
    proc = run_fresh("""
        import numpy as np, torch
        from plugins.letterbox import preprocess_batch
        from zoo.vision.letterbox import preprocess
        rng = np.random.default_rng(0)
        imgs = [rng.integers(0, 256, hw + (3,), dtype=np.uint8) for hw in [(480, 640), (1080, 1920), (640, 640),
                                                                              (333, 517), (17, 1201)]]
        for size in (640, (384, 640)):
            got, params = preprocess_batch(imgs, size, "cuda")
            expected, cpu_params = preprocess(imgs, size)
            assert params == cpu_params
            diff = np.abs(got.cpu().numpy() - expected)
            assert diff.max() <= 1 / 255 + 1e-6, diff.max()
            assert (diff > 0).mean() < 0.2, (diff > 0).mean()
        print("ok")
    """, timeout=600)
    assert proc.returncode == 0 and proc.stdout.strip() == "ok", proc.stderr[-3000:]
