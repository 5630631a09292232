"""YOLO11 detection: the zoo.yolov8 model under the command name yolo11 (either name takes either family)."""
from zoo.registry import Family

FAMILY = Family("yolo11", "YOLO11 (and YOLOv8) detection, C3k2 / C2PSA backbone, DFL head; family, scale and "
                "classes from the weights", "zoo.yolo11:Yolo11Model", tasks=("detect", "segment", "pose", "obb", "classify"),
                variants=("n", "s", "m", "l", "x"))


def Yolo11Model():  # noqa: N802 - the registry calls "module:Class" to get an instance
    from zoo.yolov8.task_model import YoloTaskModel
    return YoloTaskModel("yolo11")
