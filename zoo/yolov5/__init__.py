"""YOLOv5 v7.0 model of the zoo."""
from zoo.registry import Family

FAMILY = Family("yolov5", "YOLOv5 v7.0 detection (P5 and P6), anchors and classes from the weights, decode plugin",
                "zoo.yolov5.zoo_model:YoloV5Model", tasks=("detect", "segment", "classify"),
                variants=("n", "s", "m", "l", "x", "n6", "s6", "m6", "l6", "x6"))
