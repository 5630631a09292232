"""ResNet model of the zoo."""
from zoo.registry import Family

FAMILY = Family("resnet", "ResNet, ResNeXt and Wide ResNet classifiers on torchvision's keys, ImageNet "
                "pre-processing, top-5", "zoo.resnet.model:ResNetModel",
                variants=("resnet18", "resnet34", "resnet50", "resnet101", "resnet152", "resnext50_32x4d",
                          "resnext101_32x8d", "resnext101_64x4d", "wide_resnet50_2", "wide_resnet101_2"))
