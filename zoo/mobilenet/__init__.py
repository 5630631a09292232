"""MobileNet v2/v3 models of the zoo."""
from zoo.registry import Family

FAMILY = Family("mobilenet", "MobileNet v2 and v3 small/large classifiers on torchvision's keys, ImageNet top-5",
                "zoo.mobilenet.model:MobileNetModel",
                variants=("mobilenet_v2", "mobilenet_v3_small", "mobilenet_v3_large"),
                trained="mobilenet_v2 (torchvision IMAGENET1K_V1, zoo.assets)")
