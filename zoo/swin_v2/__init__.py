"""Swin Transformer V2 models of the zoo: the zoo.swin model code under its own command and variants."""
from zoo.registry import Family

FAMILY = Family("swin_v2", "Swin Transformer V2 tiny/small/base on torchvision's keys (cosine attention, log-spaced "
                "continuous position bias), ImageNet, top-5", "zoo.swin_v2:SwinV2Model",
                variants=("swin_v2_t", "swin_v2_s", "swin_v2_b"))


def SwinV2Model():  # noqa: N802 - the registry calls "module:Class" to get an instance
    from zoo.swin.model import SwinModel
    return SwinModel("swin_v2")
