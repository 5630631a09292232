"""YOLOv8 and YOLO11 detection: one package, the family read from the weights (zoo.yolo11 runs the same model)."""
