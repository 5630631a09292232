"""The `yolov5` command: the YOLO walker (zoo.yolo) with this line's official tables and flags."""
from zoo.registry import Family

FAMILY = Family("yolov5", "YOLOv5 v7.0 detection, segmentation and classification (P5 and P6), anchors and classes from the weights, decode plugin",
                "zoo.yolov5:Model", tasks=("detect", "segment", "classify"),
                variants=("n", "s", "m", "l", "x", "n6", "s6", "m6", "l6", "x6"))


def Model():  # noqa: N802 - the registry calls "module:Class" to get an instance
    from zoo.yolo.model import YoloModel
    return YoloModel("yolov5")
