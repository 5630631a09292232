"""Inception v3 model of the zoo."""
from zoo.registry import Family

FAMILY = Family("inception", "Inception v3 (299x299) on torchvision's keys, ImageNet pre-processing 342/299, top-5",
                "zoo.inception.model:InceptionModel", variants=("inception_v3",))
