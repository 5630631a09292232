"""EfficientNet models of the zoo."""
from zoo.registry import Family

FAMILY = Family("efficientnet", "EfficientNet B0-B7, V2 S/M/L (torchvision keys) and Lite0 (efficientnet_pytorch keys, "
                "TF SAME padding) classifiers, ImageNet top-5", "zoo.efficientnet.model:EfficientNetModel",
                variants=tuple(f"efficientnet_b{i}" for i in range(8))
                + ("efficientnet_v2_s", "efficientnet_v2_m", "efficientnet_v2_l", "efficientnet_lite0"),
                trained="efficientnet_lite0 (TF port, Apache-2.0, zoo.assets)")
