"""The `yolo12` command: the YOLO walker (zoo.yolo) with the ultralytics line's official tables and flags."""
from zoo.registry import Family

FAMILY = Family("yolo12", "YOLO12 of five tasks (A2C2f area attention); any family of the line, read from the weights",
                "zoo.yolo12:Model", tasks=("detect", "segment", "pose", "obb", "classify"),
                variants=("n", "s", "m", "l", "x"))


def Model():  # noqa: N802 - the registry calls "module:Class" to get an instance
    from zoo.yolo.model import YoloModel
    return YoloModel("yolo12")
