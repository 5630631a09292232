"""RegNet models of the zoo."""
from zoo.registry import Family

FAMILY = Family("regnet", "RegNet X and Y, 400MF to 32GF, classifiers on torchvision's keys, ImageNet top-5",
                "zoo.regnet.model:RegNetModel",
                variants=("regnet_x_400mf", "regnet_x_800mf", "regnet_x_1_6gf", "regnet_x_3_2gf", "regnet_x_8gf",
                          "regnet_x_16gf", "regnet_x_32gf", "regnet_y_400mf", "regnet_y_800mf", "regnet_y_1_6gf",
                          "regnet_y_3_2gf", "regnet_y_8gf", "regnet_y_16gf", "regnet_y_32gf"))
