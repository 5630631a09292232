"""The `yolo11` command: the YOLO walker (zoo.yolo) with this line's official tables and flags."""
from zoo.registry import Family

FAMILY = Family("yolo11", "YOLO11 (and YOLOv8) of five tasks, C3k2 / C2PSA backbone, DFL head; table, scale and classes from the weights",
                "zoo.yolo11:Model", tasks=("detect", "segment", "pose", "obb", "classify"),
                variants=("n", "s", "m", "l", "x"))


def Model():  # noqa: N802 - the registry calls "module:Class" to get an instance
    from zoo.yolo.model import YoloModel
    return YoloModel("yolo11")
