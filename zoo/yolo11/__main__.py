from zoo.engine.cli import main

from zoo.yolov8.task_model import YoloTaskModel

raise SystemExit(main(YoloTaskModel("yolo11")))
