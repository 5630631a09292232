"""The `yolov8` command: the YOLO walker (zoo.yolo) with this line's official tables and flags."""
from zoo.registry import Family

FAMILY = Family("yolov8", "YOLOv8 (and YOLO11) of five tasks, anchor-free DFL head; table, scale and classes from the weights (.pt, state_dict, .wts, folded ONNX weights)",
                "zoo.yolov8:Model", tasks=("detect", "segment", "pose", "obb", "classify"),
                variants=("n", "s", "m", "l", "x"))


def Model():  # noqa: N802 - the registry calls "module:Class" to get an instance
    from zoo.yolo.model import YoloModel
    return YoloModel("yolov8")
