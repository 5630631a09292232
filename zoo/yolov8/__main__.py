from zoo.engine.cli import main

from .task_model import YoloTaskModel

raise SystemExit(main(YoloTaskModel("yolov8")))
