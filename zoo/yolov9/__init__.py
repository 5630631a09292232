"""The `yolov9` command: the YOLO walker (zoo.yolo) with the ultralytics line's official tables and flags."""
from zoo.registry import Family

FAMILY = Family("yolov9", "YOLOv9 (GELAN) detection and -seg; any family of the line, read from the weights",
                "zoo.yolov9:Model", tasks=("detect", "segment"),
                variants=("t", "s", "m", "c", "e"))


def Model():  # noqa: N802 - the registry calls "module:Class" to get an instance
    from zoo.yolo.model import YoloModel
    return YoloModel("yolov9")
