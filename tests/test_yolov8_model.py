"""The YOLOv8 / YOLO11 reference modules against the facts of docs/yolov8.md (counts, keys, head layout)."""
import pytest
import torch

from zoo.yolov8.model import DFL, Detect, YoloV8, architecture, random_yolo

# parameters and state_dict entries of ultralytics' own models (random init, 80 classes), from the facts
COUNTS = {("yolov8", "n"): (3_157_200, 355), ("yolo11", "n"): (2_624_080, 499)}


@pytest.mark.parametrize("family,scale", sorted(COUNTS))
def test_parameter_and_key_counts_equal_ultralytics(family, scale):
    with torch.device("meta"):
        model = YoloV8(architecture(family, scale))
    params, entries = COUNTS[family, scale]
    assert sum(p.numel() for p in model.parameters()) == params
    assert len(model.state_dict()) == entries


def test_state_dict_keys_and_shapes_of_the_documented_blocks():
    with torch.device("meta"):
        v8 = YoloV8(architecture("yolov8", "n")).state_dict()
        y11 = YoloV8(architecture("yolo11", "n")).state_dict()
        y11m = YoloV8(architecture("yolo11", "m")).state_dict()
    assert v8["model.0.conv.weight"].shape == (16, 3, 3, 3)
    assert v8["model.2.m.0.cv1.conv.weight"].shape == (16, 16, 3, 3)      # C2f bottleneck, e=1.0
    assert v8["model.22.cv3.0.0.conv.weight"].shape == (80, 64, 3, 3)     # plain class branch, c3 = max(64, 80)
    assert v8["model.22.cv2.0.2.weight"].shape == (64, 64, 1, 1)          # 4 * reg_max box logits
    assert v8["model.22.dfl.conv.weight"].shape == (1, 16, 1, 1)
    assert y11["model.2.m.0.cv1.conv.weight"].shape == (8, 16, 3, 3)      # C3k2 bottleneck, e=0.5, c = 64 * 0.25
    assert y11["model.6.m.0.cv3.conv.weight"].shape == (64, 64, 1, 1)     # C3k (c3k=True at layer 6)
    assert y11["model.6.m.0.m.1.cv2.conv.weight"].shape == (32, 32, 3, 3)
    assert y11["model.10.m.0.attn.qkv.conv.weight"].shape == (256, 128, 1, 1)  # 128 + 2 * 32 * 2 heads
    assert y11["model.10.m.0.attn.pe.conv.weight"].shape == (128, 1, 3, 3)
    assert y11["model.10.m.0.ffn.1.conv.weight"].shape == (128, 256, 1, 1)
    assert y11["model.23.cv3.0.0.0.conv.weight"].shape == (64, 1, 3, 3)   # depthwise class branch
    assert y11["model.23.cv3.0.0.1.conv.weight"].shape == (80, 64, 1, 1)
    assert "model.2.m.0.cv3.conv.weight" in y11m                          # m scale: every C3k2 uses C3k


def test_output_is_channel_first_boxes_then_sigmoid_scores():
    model = random_yolo("yolo11", "n", num_classes=3, seed=1, calib_size=64)
    y = model(torch.rand(2, 3, 64, 96))
    assert y.shape == (2, 4 + 3, 8 * 12 + 4 * 6 + 2 * 3)
    assert ((y[:, 4:] >= 0) & (y[:, 4:] <= 1)).all() and y[:, 4:].std() > 0.01
    assert (y[:, 2:4] >= 0).all()  # widths and heights


def test_decode_of_known_logits():
    """One-hot DFL logits put each distance on a known bin; boxes follow (anchor -/+ distance) * stride."""
    head = Detect(nc=2, ch=(16, 16, 16), reg_max=16)
    sizes = [(2, 3), (1, 2), (1, 1)]
    raw = []
    bins = torch.tensor([1, 2, 3, 4])  # l, t, r, b
    for h, w in sizes:
        box = torch.full((1, 4, 16, h, w), -1e4)
        box[:, torch.arange(4), bins] = 0.0
        raw.append((box.view(1, 64, h, w), torch.zeros(1, 2, h, w)))
    out = head.decode(raw)
    assert out.shape == (1, 6, 6 + 2 + 1)
    # first anchor of P3: centre (0.5, 0.5) grid, stride 8: x1 = -0.5, y1 = -1.5, x2 = 3.5, y2 = 4.5
    torch.testing.assert_close(out[0, :4, 0], torch.tensor([1.5, 1.5, 4.0, 6.0]) * 8)
    # last anchor (P5, stride 32)
    torch.testing.assert_close(out[0, :4, -1], torch.tensor([1.5, 1.5, 4.0, 6.0]) * 32)
    # second anchor of P3 is the next column: x shifts by one cell
    torch.testing.assert_close(out[0, :4, 1], torch.tensor([2.5, 1.5, 4.0, 6.0]) * 8)
    torch.testing.assert_close(out[0, 4:], torch.full((2, 9), 0.5))


def test_dfl_weights_are_the_bin_indices():
    assert DFL(16).conv.weight.flatten().tolist() == list(range(16))
