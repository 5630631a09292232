"""GoogLeNet model of the zoo."""
from zoo.registry import Family

FAMILY = Family("googlenet", "GoogLeNet (Inception v1) on torchvision's keys, ImageNet pre-processing, top-5",
                "zoo.googlenet.model:GoogLeNetModel", variants=("googlenet",))
