"""DenseNet model of the zoo."""
from zoo.registry import Family

FAMILY = Family("densenet", "DenseNet-121/161/169/201 on torchvision's keys, ImageNet pre-processing, top-5",
                "zoo.densenet.model:DenseNetModel", variants=("densenet121", "densenet161", "densenet169", "densenet201"))
