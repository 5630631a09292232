from zoo.engine.cli import main

from zoo.yolov8.zoo_model import YoloV8Model

raise SystemExit(main(YoloV8Model("yolo11")))
