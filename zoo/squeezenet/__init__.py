"""SqueezeNet model of the zoo."""
from zoo.registry import Family

FAMILY = Family("squeezenet", "SqueezeNet 1.0 and 1.1 on torchvision's keys, ImageNet pre-processing, top-5",
                "zoo.squeezenet.model:SqueezeNetModel", variants=("squeezenet1_0", "squeezenet1_1"))
