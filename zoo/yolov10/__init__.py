"""The `yolov10` command: the YOLO walker (zoo.yolo) with the ultralytics line's official tables and flags."""
from zoo.registry import Family

FAMILY = Family("yolov10", "YOLOv10, end to end (one-to-one v10Detect, no NMS); any family of the line, read from the weights",
                "zoo.yolov10:Model", tasks=("detect",),
                variants=("n", "s", "m", "b", "l", "x"))


def Model():  # noqa: N802 - the registry calls "module:Class" to get an instance
    from zoo.yolo.model import YoloModel
    return YoloModel("yolov10")
