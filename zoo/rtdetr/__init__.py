"""The `rtdetr` command: RT-DETR (ultralytics' rtdetr-l, -x, -resnet50, -resnet101) through the YOLO walker, with its
own NMS-free detection part."""
from zoo.registry import Family

FAMILY = Family("rtdetr", "RT-DETR transformer detector (HGNetV2 or ResNet backbone, AIFI encoder, deformable-attention "
                "decoder), NMS-free; table and classes from the weights",
                "zoo.rtdetr:Model", tasks=("detect",), variants=("rtdetr-l", "rtdetr-x", "rtdetr-resnet50", "rtdetr-resnet101"))


def Model():  # noqa: N802 - the registry calls "module:Class" to get an instance
    from .model import RtdetrModel
    return RtdetrModel()
