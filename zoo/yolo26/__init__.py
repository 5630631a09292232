"""The `yolo26` command: the YOLO walker (zoo.yolo) with the ultralytics line's official tables and flags."""
from zoo.registry import Family

FAMILY = Family("yolo26", "YOLO26 of five tasks, end to end (top-k in the network, no NMS; --head one2many for NMS), reg_max 1; any family of the line, read from the weights",
                "zoo.yolo26:Model", tasks=("detect", "segment", "pose", "obb", "classify"),
                variants=("n", "s", "m", "l", "x"))


def Model():  # noqa: N802 - the registry calls "module:Class" to get an instance
    from zoo.yolo.model import YoloModel
    return YoloModel("yolo26")
