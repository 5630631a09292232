"""The YOLOv5 v7.0 PyTorch reference against the facts sheet (docs/yolov5.md): keys, shapes, counts, decode."""

import numpy as np
import pytest
import torch
from torch import nn

from zoo.yolov5.model import (BN_EPS, BN_MOMENTUM, C3, SPPF, VARIANTS, Bottleneck, Concat, Conv, Detect, YoloV5,
                              build_yolov5, make_divisible, parse_variant, random_yolov5, scale_depth, scale_width)


@pytest.fixture(scope="module")
def model_n() -> YoloV5:
    return random_yolov5("n", seed=0)


@pytest.fixture(scope="module")
def model_n6_nc2() -> YoloV5:
    return random_yolov5("n6", num_classes=2, seed=3)


def meta_model(variant: str, **kw) -> YoloV5:
    with torch.device("meta"):
        return build_yolov5(variant, **kw)


# keys include num_batches_tracked; params are nn.Parameters only (the anchors buffer is not one)
SHEET_COUNTS = {
    "n": (349, 1_872_157), "s": (349, 7_235_389), "m": (481, 21_190_557), "l": (613, 46_563_709),
    "x": (745, 86_749_405), "n6": (459, None), "s6": (459, 12_626_620),
}


@pytest.mark.parametrize("variant", list(SHEET_COUNTS))
def test_key_and_parameter_counts(variant):
    model = meta_model(variant)
    keys, params = SHEET_COUNTS[variant]
    assert len(model.state_dict()) == keys
    if params is not None:
        assert sum(p.numel() for p in model.parameters()) == params


def test_yolov5s_keys_without_num_batches_tracked():
    sd = meta_model("s").state_dict()
    assert len([k for k in sd if not k.endswith("num_batches_tracked")]) == 292


# The sheet's table of yolov5s conv weight shapes ("cv1[...]" = model.i.cv1.conv.weight).
YOLOV5S_SHAPES = {
    "model.0.conv.weight": (32, 3, 6, 6),
    "model.1.conv.weight": (64, 32, 3, 3),
    "model.2.cv1.conv.weight": (32, 64, 1, 1), "model.2.cv2.conv.weight": (32, 64, 1, 1),
    "model.2.cv3.conv.weight": (64, 64, 1, 1), "model.2.m.0.cv1.conv.weight": (32, 32, 1, 1),
    "model.2.m.0.cv2.conv.weight": (32, 32, 3, 3),
    "model.3.conv.weight": (128, 64, 3, 3),
    "model.4.cv1.conv.weight": (64, 128, 1, 1), "model.4.cv2.conv.weight": (64, 128, 1, 1),
    "model.4.cv3.conv.weight": (128, 128, 1, 1),
    "model.4.m.0.cv1.conv.weight": (64, 64, 1, 1), "model.4.m.1.cv1.conv.weight": (64, 64, 1, 1),
    "model.4.m.0.cv2.conv.weight": (64, 64, 3, 3), "model.4.m.1.cv2.conv.weight": (64, 64, 3, 3),
    "model.5.conv.weight": (256, 128, 3, 3),
    "model.6.cv1.conv.weight": (128, 256, 1, 1), "model.6.cv2.conv.weight": (128, 256, 1, 1),
    "model.6.cv3.conv.weight": (256, 256, 1, 1),
    **{f"model.6.m.{j}.cv1.conv.weight": (128, 128, 1, 1) for j in range(3)},
    **{f"model.6.m.{j}.cv2.conv.weight": (128, 128, 3, 3) for j in range(3)},
    "model.7.conv.weight": (512, 256, 3, 3),
    "model.8.cv1.conv.weight": (256, 512, 1, 1), "model.8.cv2.conv.weight": (256, 512, 1, 1),
    "model.8.cv3.conv.weight": (512, 512, 1, 1), "model.8.m.0.cv1.conv.weight": (256, 256, 1, 1),
    "model.8.m.0.cv2.conv.weight": (256, 256, 3, 3),
    "model.9.cv1.conv.weight": (256, 512, 1, 1), "model.9.cv2.conv.weight": (512, 1024, 1, 1),
    "model.10.conv.weight": (256, 512, 1, 1),
    "model.13.cv1.conv.weight": (128, 512, 1, 1), "model.13.cv2.conv.weight": (128, 512, 1, 1),
    "model.13.cv3.conv.weight": (256, 256, 1, 1), "model.13.m.0.cv1.conv.weight": (128, 128, 1, 1),
    "model.13.m.0.cv2.conv.weight": (128, 128, 3, 3),
    "model.14.conv.weight": (128, 256, 1, 1),
    "model.17.cv1.conv.weight": (64, 256, 1, 1), "model.17.cv2.conv.weight": (64, 256, 1, 1),
    "model.17.cv3.conv.weight": (128, 128, 1, 1), "model.17.m.0.cv1.conv.weight": (64, 64, 1, 1),
    "model.17.m.0.cv2.conv.weight": (64, 64, 3, 3),
    "model.18.conv.weight": (128, 128, 3, 3),
    "model.20.cv1.conv.weight": (128, 256, 1, 1), "model.20.cv2.conv.weight": (128, 256, 1, 1),
    "model.20.cv3.conv.weight": (256, 256, 1, 1), "model.20.m.0.cv1.conv.weight": (128, 128, 1, 1),
    "model.20.m.0.cv2.conv.weight": (128, 128, 3, 3),
    "model.21.conv.weight": (256, 256, 3, 3),
    "model.23.cv1.conv.weight": (256, 512, 1, 1), "model.23.cv2.conv.weight": (256, 512, 1, 1),
    "model.23.cv3.conv.weight": (512, 512, 1, 1), "model.23.m.0.cv1.conv.weight": (256, 256, 1, 1),
    "model.23.m.0.cv2.conv.weight": (256, 256, 3, 3),
    "model.24.anchors": (3, 3, 2),
    "model.24.m.0.weight": (255, 128, 1, 1), "model.24.m.0.bias": (255,),
    "model.24.m.1.weight": (255, 256, 1, 1), "model.24.m.1.bias": (255,),
    "model.24.m.2.weight": (255, 512, 1, 1), "model.24.m.2.bias": (255,),
}


def test_yolov5s_shapes_match_the_sheet():
    sd = meta_model("s").state_dict()
    shapes = {k: tuple(v.shape) for k, v in sd.items()}
    for key, shape in YOLOV5S_SHAPES.items():
        assert shapes[key] == shape, key
    # every conv weight of the model is in the table (nothing extra, nothing forgotten)
    conv_keys = {k for k in shapes if k.endswith("conv.weight")}
    assert conv_keys == {k for k in YOLOV5S_SHAPES if k.endswith("conv.weight")}
    # every Conv has its five BN entries
    for k in conv_keys:
        prefix = k[: -len("conv.weight")]
        for suffix in ("weight", "bias", "running_mean", "running_var", "num_batches_tracked"):
            assert prefix + "bn." + suffix in shapes
    # parameterless layers have no keys
    for i in (11, 12, 15, 16, 19, 22):
        assert not [k for k in shapes if k.startswith(f"model.{i}.")]
    # Detect's own buffer comes before its children
    keys = list(shapes)
    assert keys.index("model.24.anchors") < keys.index("model.24.m.0.weight")
    assert keys[-1] == "model.24.m.2.bias"


SHEET_WIDTHS = {"n": (16, 32, 64, 128, 256), "s": (32, 64, 128, 256, 512), "m": (48, 96, 192, 384, 768),
                "l": (64, 128, 256, 512, 1024), "x": (80, 160, 320, 640, 1280)}
SHEET_REPEATS = {"n": (1, 2, 3, 1), "s": (1, 2, 3, 1), "m": (2, 4, 6, 2), "l": (3, 6, 9, 3), "x": (4, 8, 12, 4)}


@pytest.mark.parametrize("variant", list(VARIANTS))
def test_widths_and_repeats_match_the_sheet(variant):
    model = meta_model(variant)
    widths = [model.model[i].conv.out_channels for i in (0, 1, 3, 5, 7)]
    assert tuple(widths) == SHEET_WIDTHS[variant]
    assert tuple(len(model.model[i].m) for i in (2, 4, 6, 8)) == SHEET_REPEATS[variant]
    head = {"n": 1, "s": 1, "m": 2, "l": 3, "x": 4}[variant]
    assert [len(model.model[i].m) for i in (13, 17, 20, 23)] == [head] * 4


def test_scaling_rules():
    assert make_divisible(64 * 0.25) == 16 and make_divisible(17) == 24 and make_divisible(8) == 8
    assert scale_width(1024, 1.25) == 1280 and scale_width(768, 0.75) == 576
    assert scale_depth(1, 0.33) == 1  # n == 1 is never scaled
    assert scale_depth(3, 0.33) == 1 and scale_depth(9, 1.33) == 12
    assert scale_depth(3, 0.5) == 2 and scale_depth(9, 0.5) == 4  # round half to even: 1.5 -> 2, 4.5 -> 4
    assert scale_depth(3, 0.1) == 1  # max(..., 1)
    assert parse_variant("yolov5s6") == (0.33, 0.5, True) and parse_variant("L") == (1.0, 1.0, False)
    with pytest.raises(ValueError, match="unknown YOLOv5 variant 'q'"):
        parse_variant("q")


def test_p6_graph_and_detect_inputs():
    model = meta_model("s6")
    assert len(model.model) == 34 and isinstance(model.model[33], Detect)
    assert model.model[33].f == [23, 26, 29, 32]
    assert [c.in_channels for c in model.model[33].m] == [128, 256, 384, 512]
    assert [model.model[i].conv.out_channels for i in (7, 9)] == [384, 512]  # yaml 768, 1024
    assert "model.33.stride" not in model.state_dict()  # non-persistent: upstream does not save it
    assert build_yolov5("n6").detect.stride.tolist() == [8, 16, 32, 64]


def test_module_structure_for_hooks():
    model = meta_model("n")
    names = dict(model.named_modules())
    assert isinstance(names["model.11"], nn.Upsample) and isinstance(names["model.12"], Concat)
    assert isinstance(names["model.9"], SPPF) and isinstance(names["model.2"], C3)
    assert isinstance(names["model.2.m.0"], Bottleneck) and isinstance(names["model.4.cv1"], Conv)
    assert isinstance(names["model.4.cv1.act"], nn.SiLU)
    assert [m.i for m in model.model] == list(range(25))
    assert model.model[12].f == [-1, 6] and model.model[24].f == [17, 20, 23] and model.model[5].f == -1
    assert model.model[11].scale_factor == 2.0 and model.model[11].mode == "nearest"
    # backbone bottlenecks add the shortcut, head ones do not
    assert all(b.add for i in (2, 4, 6, 8) for b in model.model[i].m)
    assert not any(b.add for i in (13, 17, 20, 23) for b in model.model[i].m)
    assert model.model[0].conv.kernel_size == (6, 6) and model.model[0].conv.padding == (2, 2)
    assert model.model[0].conv.stride == (2, 2) and model.model[0].conv.bias is None
    bns = [m for m in model.modules() if isinstance(m, nn.BatchNorm2d)]
    assert bns and all(m.eps == BN_EPS == 1e-3 and m.momentum == BN_MOMENTUM == 0.03 for m in bns)
    assert all(c.bias is not None for c in model.detect.m)


def test_anchors_buffer_in_grid_units():
    model = build_yolov5("n")
    expected = torch.tensor([[[1.25, 1.625], [2, 3.75], [4.125, 2.875]],
                             [[1.875, 3.8125], [3.875, 2.8125], [3.6875, 7.4375]],
                             [[3.625, 2.8125], [4.875, 6.1875], [11.65625, 10.1875]]])
    assert torch.equal(model.state_dict()["model.24.anchors"], expected)
    assert model.detect.stride.tolist() == [8.0, 16.0, 32.0]
    p6 = build_yolov5("n6").state_dict()["model.33.anchors"]
    assert torch.equal(p6[3], torch.tensor([[436, 615], [739, 380], [925, 792]]) / 64.0)


def test_output_shapes_at_640(model_n, model_n6_nc2):
    with torch.no_grad():
        assert model_n(torch.zeros(1, 3, 640, 640)).shape == (1, 25200, 85)
        assert model_n6_nc2(torch.zeros(1, 3, 640, 640)).shape == (1, 25500, 7)
        assert model_n(torch.zeros(2, 3, 256, 320)).shape == (2, 3 * (32 * 40 + 16 * 20 + 8 * 10), 85)


def test_state_dict_round_trip_and_random_weights(model_n):
    a, b, c = model_n, random_yolov5("n", seed=0), random_yolov5("n", seed=1)
    sa, sb, sc = a.state_dict(), b.state_dict(), c.state_dict()
    assert all(torch.equal(sa[k], sb[k]) for k in sa)
    assert not torch.equal(sa["model.0.conv.weight"], sc["model.0.conv.weight"])
    fresh = build_yolov5("n")
    fresh.load_state_dict(sa, strict=True)
    # BatchNorm is not an identity anywhere
    for m in a.modules():
        if isinstance(m, nn.BatchNorm2d):
            assert not torch.allclose(m.running_var, torch.ones_like(m.running_var))
            assert not torch.allclose(m.running_mean, torch.zeros_like(m.running_mean))
            assert not torch.allclose(m.weight, torch.ones_like(m.weight))


def _decode_reference(raw: list[np.ndarray], anchors_grid: np.ndarray, strides: list[int], no: int) -> np.ndarray:
    """The sheet's formulas, re-derived in numpy (float64) from the raw head conv outputs."""
    rows = []
    for i, t in enumerate(raw):
        bs, ch, ny, nx = t.shape
        na = ch // no
        s = strides[i]
        sig = 1.0 / (1.0 + np.exp(-t.astype(np.float64)))
        for b in range(bs):
            level = []
            for a in range(na):  # anchor-major, then y, then x
                for y in range(ny):
                    for x in range(nx):
                        v = sig[b, a * no:(a + 1) * no, y, x]
                        cx = (2 * v[0] - 0.5 + x) * s
                        cy = (2 * v[1] - 0.5 + y) * s
                        w = (2 * v[2]) ** 2 * anchors_grid[i, a, 0] * s
                        h = (2 * v[3]) ** 2 * anchors_grid[i, a, 1] * s
                        level.append(np.concatenate([[cx, cy, w, h], v[4:]]))
            rows.append((b, np.array(level)))
    out = [np.concatenate([lv for bb, lv in rows if bb == b]) for b in range(raw[0].shape[0])]
    return np.stack(out)


@pytest.mark.parametrize("which,size", [("model_n", (64, 96)), ("model_n6_nc2", (128, 64))])
def test_decode_matches_independent_derivation(which, size, request):
    model = request.getfixturevalue(which)
    det = model.detect
    nc = det.nc
    raw: dict[int, np.ndarray] = {}
    hooks = [conv.register_forward_hook(lambda m, i, o, k=k: raw.__setitem__(k, o.detach().numpy().copy()))
             for k, conv in enumerate(det.m)]
    x = torch.rand(2, 3, *size, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        out = model(x).numpy()
    for h in hooks:
        h.remove()
    expected = _decode_reference([raw[k] for k in range(det.nl)], det.anchors.numpy(), det.stride.int().tolist(),
                                 nc + 5)
    assert out.shape == expected.shape == (2, sum(3 * (size[0] // s) * (size[1] // s) for s in det.stride.int()),
                                           nc + 5)
    np.testing.assert_allclose(out, expected, rtol=2e-6, atol=2e-5)
    # raw_head_outputs gives the same conv outputs as the hooks
    with torch.no_grad():
        for k, r in enumerate(model.raw_head_outputs(x)):
            np.testing.assert_array_equal(r.numpy(), raw[k])


def test_random_model_has_a_spread_of_outputs(model_n):
    model = model_n
    g = torch.Generator().manual_seed(0)
    smooth = nn.functional.interpolate(torch.rand(1, 3, 10, 10, generator=g), size=(320, 320), mode="bilinear")
    for name, x in (("noise", torch.rand(1, 3, 320, 320, generator=g)), ("smooth", smooth)):
        with torch.no_grad():
            y = model(x)[0]
        assert torch.isfinite(y).all(), name
        obj, cls = y[:, 4], y[:, 5:]
        spread = ((obj > 0.05) & (obj < 0.95)).float().mean()
        assert obj.std() > 0.1 and spread > 0.3, (name, float(obj.std()), float(spread))
        spread = ((cls > 0.05) & (cls < 0.95)).float().mean()
        assert spread > 0.3, (name, float(spread))
        # boxes are in the decode's range: wh in [0, 4 * largest anchor], centres within a cell's reach of the input
        assert 0 <= y[:, 2:4].min() and y[:, 2:4].max() <= 4 * 373, (name, float(y[:, 2:4].max()))
        assert -16 <= y[:, :2].min() and y[:, :2].max() <= 320 + 16, name


def test_batch_items_are_independent(model_n):
    x = torch.rand(3, 3, 64, 64, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        full = model_n(x)
        single = model_n(x[1:2])
    # conv accumulation order depends on the batch size; cross-talk would be far larger than this
    torch.testing.assert_close(full[1:2], single, rtol=1e-3, atol=1e-3)
