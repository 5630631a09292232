"""PyTorch reference modules of PP-OCR's mobile networks (v4 and v5), in their inference form.

The trained files are Paddle exports in which every PP-LCNetV3 "learnable re-parameterisation" layer is already
folded into one convolution with a bias, followed by a learnable affine block (a scalar scale and shift, `lab`) and,
where the block has one, a hard-swish that carries its own affine block. The modules here are that folded form, so
they hold exactly the tensors the files hold. Channel counts and kernel sizes come from the weights' shapes; strides
and where squeeze-excitation sits are the architecture's (PP-LCNetV3's detection and recognition tables), as they
are not in the weights.

Module order is the files' order: each forward calls its parameterised modules in the order the exported graph
uses their tensors, which is what `zoo.ppocr.onnx_import` relies on to give the files' flat names structured ones.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

# PP-LCNetV3 stages 2..6: per block (depthwise stride, squeeze-excitation). Detection and recognition differ.
LCNET_DET = ((((1, 1), False),),
             (((2, 2), False), ((1, 1), False)),
             (((2, 2), False), ((1, 1), False)),
             (((2, 2), False),) + (((1, 1), False),) * 4,
             (((2, 2), True), ((1, 1), True), ((1, 1), False), ((1, 1), False)))
LCNET_REC = ((((1, 1), False),),
             (((1, 1), False), ((1, 1), False)),
             (((2, 1), False), ((1, 1), False)),
             (((1, 2), False),) + (((1, 1), False),) * 4,
             (((2, 1), True), ((1, 1), True), ((2, 1), False), ((1, 1), False)))
# MobileNetV3-small of the direction classifier: (activation, depthwise stride, squeeze-excitation) per block;
# channels and kernels come from the weights.
MOBILENET_CLS = (("relu", (2, 1), True), ("relu", (2, 1), False), ("relu", (1, 1), False),
                 ("hardswish", (2, 1), True), ("hardswish", (1, 1), True), ("hardswish", (1, 1), True),
                 ("hardswish", (1, 1), True), ("hardswish", (1, 1), True), ("hardswish", (2, 1), True),
                 ("hardswish", (1, 1), True), ("hardswish", (1, 1), True))
# The gate of squeeze-excitation is a hard-sigmoid clip(slope x + 0.5, 0, 1): slope 0.2 in the detector's neck and
# the classifier (Paddle's explicit value there), 1/6 inside PP-LCNetV3 (Paddle's default; torch's hardsigmoid).
SE_SLOPE_NECK, SE_SLOPE_LCNET = 0.2, 1.0 / 6.0
SVTR_HEADS = 8         # attention heads of the recognizer's SVTR neck (its head width is 120 / 8 = 15)
BN_EPS = 1e-5


def hard_sigmoid(x, slope: float):
    return torch.clamp(x * slope + 0.5, 0.0, 1.0)


class Affine(nn.Module):
    """PP-LCNetV3's learnable affine block: one scalar scale and one scalar shift."""

    def __init__(self):
        super().__init__()
        self.scale = nn.Parameter(torch.ones(1))
        self.bias = nn.Parameter(torch.zeros(1))

    def forward(self, x):
        return x * self.scale + self.bias


class HardSwishAffine(nn.Module):
    def __init__(self):
        super().__init__()
        self.lab = Affine()

    def forward(self, x):
        return self.lab(F.hardswish(x))


class RepConv(nn.Module):
    """A folded learnable re-parameterisation layer: conv (with bias) -> affine -> [hard-swish -> affine]."""

    def __init__(self, cin: int, cout: int, kernel: int, stride=(1, 1), groups: int = 1, act: bool = True):
        super().__init__()
        self.conv = nn.Conv2d(cin, cout, kernel, stride, kernel // 2, groups=groups)
        self.lab = Affine()
        self.act = HardSwishAffine() if act else None

    def forward(self, x):
        x = self.lab(self.conv(x))
        return self.act(x) if self.act is not None else x


class SqueezeExcite(nn.Module):
    """avg pool -> conv (C/4) -> ReLU -> conv (C) -> hard-sigmoid of `slope`; multiplies x (`residual`: adds that
    product to x, as the detector's neck does)."""

    def __init__(self, channels: int, squeeze: int, slope: float = SE_SLOPE_NECK, residual: bool = False):
        super().__init__()
        self.conv1 = nn.Conv2d(channels, squeeze, 1)
        self.conv2 = nn.Conv2d(squeeze, channels, 1)
        self.slope, self.residual = slope, residual

    def forward(self, x):
        gate = hard_sigmoid(self.conv2(F.relu(self.conv1(F.adaptive_avg_pool2d(x, 1)))), self.slope)
        return x + x * gate if self.residual else x * gate


class LCNetV3Block(nn.Module):
    def __init__(self, cin: int, cout: int, kernel: int, stride, se: bool):
        super().__init__()
        # the depthwise layer has no activation where it halves both sides (PP-LCNetV3's rule, stride == 2)
        self.dw_conv = RepConv(cin, cin, kernel, stride, groups=cin, act=tuple(stride) != (2, 2))
        self.se = SqueezeExcite(cin, cin // 4, SE_SLOPE_LCNET) if se else None
        self.pw_conv = RepConv(cin, cout, 1)

    def forward(self, x):
        x = self.dw_conv(x)
        if self.se is not None:
            x = self.se(x)
        return self.pw_conv(x)


class ConvBN(nn.Module):
    def __init__(self, cin: int, cout: int, kernel, stride=(1, 1), padding=0, groups: int = 1):
        super().__init__()
        self.conv = nn.Conv2d(cin, cout, kernel, stride, padding, groups=groups, bias=False)
        self.bn = nn.BatchNorm2d(cout, eps=BN_EPS)

    def forward(self, x):
        return self.bn(self.conv(x))


class LCNetV3(nn.Module):
    """Stem conv + BN (no activation), stages 2..6; `det` also returns four 1x1-projected stage outputs."""

    def __init__(self, channels: list[list[tuple[int, int, int]]], table, stem: int, det_outputs=None):
        super().__init__()
        self.conv1 = ConvBN(3, stem, 3, (2, 2), 1)
        for stage, (blocks, layout) in enumerate(zip(channels, table), start=2):
            setattr(self, f"blocks{stage}", nn.Sequential(*[
                LCNetV3Block(cin, cout, k, stride, se) for (cin, cout, k), (stride, se) in zip(blocks, layout)]))
        self.layer_list = None
        if det_outputs is not None:
            self.layer_list = nn.ModuleList(nn.Conv2d(cin, cout, 1) for cin, cout in det_outputs)

    def forward(self, x):
        x = self.blocks2(self.conv1(x))
        outs = []
        for stage in (3, 4, 5, 6):
            x = getattr(self, f"blocks{stage}")(x)
            outs.append(x)
        if self.layer_list is None:
            return x
        return [conv(o) for conv, o in zip(self.layer_list, outs)]


class RSELayer(nn.Module):
    def __init__(self, cin: int, cout: int, kernel: int):
        super().__init__()
        self.in_conv = nn.Conv2d(cin, cout, kernel, 1, kernel // 2, bias=False)
        self.se = SqueezeExcite(cout, cout // 4, residual=True)

    def forward(self, x):
        return self.se(self.in_conv(x))


class RSEFPN(nn.Module):
    def __init__(self, in_channels: list[int], out_channels: int):
        super().__init__()
        self.ins_conv = nn.ModuleList(RSELayer(c, out_channels, 1) for c in in_channels)
        self.inp_conv = nn.ModuleList(RSELayer(out_channels, out_channels // 4, 3) for _ in in_channels)

    def forward(self, features):
        c2, c3, c4, c5 = features
        in5, in4, in3, in2 = (self.ins_conv[i](c) for i, c in ((3, c5), (2, c4), (1, c3), (0, c2)))
        out4 = in4 + F.interpolate(in5, scale_factor=2.0, mode="nearest")
        out3 = in3 + F.interpolate(out4, scale_factor=2.0, mode="nearest")
        out2 = in2 + F.interpolate(out3, scale_factor=2.0, mode="nearest")
        p5, p4, p3, p2 = (self.inp_conv[i](o) for i, o in ((3, in5), (2, out4), (1, out3), (0, out2)))
        p5 = F.interpolate(p5, scale_factor=8.0, mode="nearest")
        p4 = F.interpolate(p4, scale_factor=4.0, mode="nearest")
        p3 = F.interpolate(p3, scale_factor=2.0, mode="nearest")
        return torch.cat([p5, p4, p3, p2], dim=1)


class DBHead(nn.Module):
    """The probability branch of the DB head: conv3x3 + BN + ReLU, two 2x2 transposed convolutions (x4), sigmoid."""

    def __init__(self, cin: int):
        super().__init__()
        mid = cin // 4
        self.conv1 = ConvBN(cin, mid, 3, padding=1)
        self.conv2 = nn.ConvTranspose2d(mid, mid, 2, 2)
        self.bn2 = nn.BatchNorm2d(mid, eps=BN_EPS)
        self.conv3 = nn.ConvTranspose2d(mid, 1, 2, 2)

    def forward(self, x):
        x = F.relu(self.conv1(x))
        x = F.relu(self.bn2(self.conv2(x)))
        return torch.sigmoid(self.conv3(x))


class TextDetector(nn.Module):
    """PP-OCR mobile DB detector: [N, 3, H, W] (H, W multiples of 32) -> text probability [N, 1, H, W]."""

    def __init__(self, cfg: dict):
        super().__init__()
        self.backbone = LCNetV3(cfg["stages"], LCNET_DET, cfg["stem"], cfg["det_outputs"])
        self.neck = RSEFPN([c for _, c in cfg["det_outputs"]], cfg["fpn"])
        self.head = DBHead(cfg["fpn"])

    def forward(self, x):
        return self.head(self.neck(self.backbone(x)))


class ConvBNSwish(ConvBN):
    def forward(self, x):
        return F.silu(super().forward(x))


class Attention(nn.Module):
    def __init__(self, dim: int, heads: int):
        super().__init__()
        self.heads = heads
        self.qkv = nn.Linear(dim, dim * 3)
        self.proj = nn.Linear(dim, dim)

    def forward(self, x):
        n, length, dim = x.shape
        qkv = self.qkv(x).reshape(n, length, 3, self.heads, dim // self.heads).permute(2, 0, 3, 1, 4)
        q, k, v = qkv[0] * (dim // self.heads) ** -0.5, qkv[1], qkv[2]
        attention = torch.softmax(q @ k.transpose(-2, -1), dim=-1)
        return self.proj((attention @ v).transpose(1, 2).reshape(n, length, dim))


class SVTRBlock(nn.Module):
    def __init__(self, dim: int, hidden: int, heads: int):
        super().__init__()
        self.norm1 = nn.LayerNorm(dim, eps=1e-5)
        self.mixer = Attention(dim, heads)
        self.norm2 = nn.LayerNorm(dim, eps=1e-5)
        self.fc1 = nn.Linear(dim, hidden)
        self.fc2 = nn.Linear(hidden, dim)

    def forward(self, x):
        x = x + self.mixer(self.norm1(x))
        return x + self.fc2(F.silu(self.fc1(self.norm2(x))))


class SVTRNeck(nn.Module):
    """SVTR encoder over the backbone's one-row feature map, with the convolutional shortcut around it."""

    def __init__(self, cin: int, dims: int, hidden: int, depth: int):
        super().__init__()
        self.conv1 = ConvBNSwish(cin, cin // 8, (1, 3), padding=(0, 1))
        self.conv2 = ConvBNSwish(cin // 8, dims, 1)
        self.blocks = nn.ModuleList(SVTRBlock(dims, hidden, SVTR_HEADS) for _ in range(depth))
        self.norm = nn.LayerNorm(dims, eps=1e-6)
        self.conv3 = ConvBNSwish(dims, cin, 1)
        self.conv4 = ConvBNSwish(2 * cin, cin // 8, (1, 3), padding=(0, 1))
        self.conv1x1 = ConvBNSwish(cin // 8, dims, 1)

    def forward(self, x):
        shortcut = x
        z = self.conv2(self.conv1(x))
        n, c, h, w = z.shape
        tokens = z.flatten(2).transpose(1, 2)
        for block in self.blocks:
            tokens = block(tokens)
        z = self.norm(tokens).reshape(n, h, w, c).permute(0, 3, 1, 2)
        z = self.conv3(z)
        return self.conv1x1(self.conv4(torch.cat([shortcut, z], dim=1)))


class TextRecognizer(nn.Module):
    """PP-OCR mobile SVTR-LCNet recognizer: [N, 3, 48, W] -> per-column character probabilities [N, W/8, classes]."""

    def __init__(self, cfg: dict):
        super().__init__()
        self.backbone = LCNetV3(cfg["stages"], LCNET_REC, cfg["stem"])
        cin = cfg["stages"][-1][-1][1]
        self.neck = SVTRNeck(cin, cfg["dims"], cfg["hidden"], cfg["depth"])
        self.fc = nn.Linear(cfg["dims"], cfg["classes"])

    def forward(self, x):
        x = F.avg_pool2d(self.backbone(x), (3, 2))
        x = self.neck(x).squeeze(2).transpose(1, 2)
        return torch.softmax(self.fc(x), dim=2)


class InvertedResidual(nn.Module):
    def __init__(self, cin: int, expand: int, cout: int, kernel: int, stride, se: bool, act: str):
        super().__init__()
        self.expand_conv = ConvBN(cin, expand, 1)
        self.bottleneck_conv = ConvBN(expand, expand, kernel, stride, kernel // 2, groups=expand)
        self.mid_se = SqueezeExcite(expand, expand // 4) if se else None
        self.linear_conv = ConvBN(expand, cout, 1)
        self.act = F.relu if act == "relu" else F.hardswish
        self.shortcut = cin == cout and tuple(stride) == (1, 1)

    def forward(self, x):
        y = self.act(self.bottleneck_conv(self.act(self.expand_conv(x))))
        if self.mid_se is not None:
            y = self.mid_se(y)
        y = self.linear_conv(y)
        return x + y if self.shortcut else y


class DirectionClassifier(nn.Module):
    """MobileNetV3-small text-line direction classifier: [N, 3, 48, 192] -> probabilities of (0, 180) degrees."""

    def __init__(self, cfg: dict):
        super().__init__()
        self.conv1 = ConvBN(3, cfg["stem"], 3, (2, 2), 1)
        self.blocks = nn.Sequential(*[InvertedResidual(cin, e, cout, k, stride, se, act)
                                      for (cin, e, cout, k), (act, stride, se) in zip(cfg["blocks"], MOBILENET_CLS)])
        self.conv2 = ConvBN(cfg["blocks"][-1][2], cfg["last"], 1)
        self.fc = nn.Linear(cfg["last"], cfg["classes"])

    def forward(self, x):
        x = F.hardswish(self.conv1(x))
        x = F.hardswish(self.conv2(self.blocks(x)))
        x = F.adaptive_avg_pool2d(F.max_pool2d(x, 2, 2), 1).flatten(1)
        return torch.softmax(self.fc(x), dim=1)


STAGES = {"det": TextDetector, "cls": DirectionClassifier, "rec": TextRecognizer}
