"""AlexNet model of the zoo."""
from zoo.registry import Family

FAMILY = Family("alexnet", "AlexNet on torchvision's keys, ImageNet pre-processing, top-5",
                "zoo.alexnet.model:AlexNetModel", variants=("alexnet",))
