"""MNASNet models of the zoo."""
from zoo.registry import Family

FAMILY = Family("mnasnet", "MNASNet 0.5/0.75/1.0/1.3 classifiers on torchvision's keys, ImageNet top-5",
                "zoo.mnasnet.model:MNASNetModel", variants=("mnasnet0_5", "mnasnet0_75", "mnasnet1_0", "mnasnet1_3"))
