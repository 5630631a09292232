"""ShuffleNet v2 model of the zoo."""
from zoo.registry import Family

FAMILY = Family("shufflenet", "ShuffleNet v2 x0.5/x1.0/x1.5/x2.0 on torchvision's keys, ImageNet pre-processing, top-5",
                "zoo.shufflenet.model:ShuffleNetModel",
                variants=("shufflenet_v2_x0_5", "shufflenet_v2_x1_0", "shufflenet_v2_x1_5", "shufflenet_v2_x2_0"))
