"""YOLOv8 detection (the same package runs YOLO11: the family is read from the weights)."""
from zoo.registry import Family

FAMILY = Family("yolov8", "YOLOv8 (and YOLO11) detection, anchor-free DFL head; family, scale and classes from the "
                "weights (.pt, state_dict, .wts, folded ONNX weights)",
                "zoo.yolov8.task_model:YoloTaskModel", tasks=("detect", "segment", "pose", "obb", "classify"),
                variants=("n", "s", "m", "l", "x"))
