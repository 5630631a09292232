"""VGG model of the zoo."""
from zoo.registry import Family

FAMILY = Family("vgg", "VGG-11/13/16/19, with and without BatchNorm, on torchvision's keys, ImageNet, top-5",
                "zoo.vgg.model:VGGModel",
                variants=("vgg11", "vgg11_bn", "vgg13", "vgg13_bn", "vgg16", "vgg16_bn", "vgg19", "vgg19_bn"))
