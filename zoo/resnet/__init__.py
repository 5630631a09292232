"""ResNet model of the zoo."""
from zoo.registry import Family

FAMILY = Family("resnet", "ResNet classifiers on torchvision's keys, ImageNet pre-processing, top-5",
                "zoo.resnet.model:ResNetModel", variants=("resnet18", "resnet34", "resnet50", "resnet101", "resnet152"))
