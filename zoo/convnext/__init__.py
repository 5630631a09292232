"""ConvNeXt model of the zoo."""
from zoo.registry import Family

FAMILY = Family("convnext", "ConvNeXt tiny/small/base/large on torchvision's keys, ImageNet pre-processing, top-5",
                "zoo.convnext.model:ConvNeXtModel",
                variants=("convnext_tiny", "convnext_small", "convnext_base", "convnext_large"))
