"""Vision Transformer model of the zoo."""
from zoo.registry import Family

FAMILY = Family("vit", "Vision Transformer B/16, B/32, L/16, L/32, H/14 on torchvision's keys, ImageNet, top-5",
                "zoo.vit.model:ViTModel", variants=("vit_b_16", "vit_b_32", "vit_l_16", "vit_l_32", "vit_h_14"))
