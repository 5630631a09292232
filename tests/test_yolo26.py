"""YOLO26 and the end-to-end head (zoo/yolo/blocks: sppf.py, csp.py, detect.py, end2end.py): its backbone forms
(SPPF with n pools and a shortcut, C3k2's attention form) built from the registry against their reference modules
on the reference backend and ONNX Runtime at FP32 1e-4; the tables' parameter counts against upstream's; the
end-to-end head against an independent PyTorch reading of upstream's eval computation."""
from __future__ import annotations

import pytest
import torch

from test_yolo_blocks_extra import check_block
from zoo.yolo import walker
from zoo.yolo.registry import Options


@pytest.mark.parametrize("args", [[32, 32, 5, 3, True], [32, 16, 5, 2, True], [16, 16, 3, 3, False]])
def test_sppf_with_pools_and_shortcut(args):
    check_block("SPPF", args, (1, args[0], 8, 8), 4, Options(sppf_act=False))


def test_sppf_shortcut_adds_the_input():
    """A cv2 of zeros leaves exactly the input when the shortcut is on (and zeros when it is off)."""
    from zoo.yolo.registry import lookup
    x = torch.randn(1, 8, 6, 6)
    for shortcut in (True, False):
        m = lookup("SPPF", "t").module(8, 8, 5, 3, shortcut).eval()
        torch.nn.init.zeros_(m.cv2.conv.weight)
        m.cv2.bn.bias.data.fill_(-50.0)     # SiLU(-50) ~ 0
        y = m(x)
        assert torch.allclose(y, x if shortcut else torch.zeros_like(x), atol=1e-6)


@pytest.mark.parametrize("args", [[32, 32, 1, True, 0.5, True], [32, 64, 2, False, 0.5, True]])
def test_c3k2_attention_form(args):
    rows = check_block("C3k2", args, (1, args[0], 4, 4), 6)
    assert any(".m.0.1.attn" in r.name for r in rows)


def test_yolo26_tables_have_upstreams_parameter_counts():
    """ultralytics 8.4.190 cfg/models/26/<table>.yaml, scale n (nc 80, kpt 17x3 for pose): "... N parameters",
    the model as built (both branches, training's parts)."""
    counts = {"yolo26": 2_572_280, "yolo26-p2": 2_662_400, "yolo26-p6": 4_063_872, "yolo26-pose": 3_747_554,
              "yolo26-obb": 2_715_614, "yolo26-seg": 3_126_280, "yolo26-cls": 2_812_104}
    for name, count in counts.items():
        table = walker.official_table(name)
        with torch.device("meta"):
            module = walker.build_module(walker.resolve(table, "n"), Options())
        assert sum(p.numel() for p in module.parameters()) == count, name
