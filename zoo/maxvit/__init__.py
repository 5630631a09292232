"""MaxViT model of the zoo."""
from zoo.registry import Family

FAMILY = Family("maxvit", "MaxViT-T on torchvision's keys (MBConv with squeeze-excitation, block and grid attention "
                "with relative position bias), ImageNet, top-5", "zoo.maxvit.model:MaxVitModel", variants=("maxvit_t",))
