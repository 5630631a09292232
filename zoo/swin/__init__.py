"""Swin Transformer models of the zoo (V1 here; V2 under zoo.swin_v2, the same model code)."""
from zoo.registry import Family

FAMILY = Family("swin", "Swin Transformer tiny/small/base on torchvision's keys (shifted windows, relative position "
                "bias), ImageNet, top-5", "zoo.swin:SwinV1Model", variants=("swin_t", "swin_s", "swin_b"))


def SwinV1Model():  # noqa: N802 - the registry calls "module:Class" to get an instance
    from .model import SwinModel
    return SwinModel("swin")
