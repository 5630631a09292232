from zoo.engine.cli import main

from .zoo_model import YoloV8Model

raise SystemExit(main(YoloV8Model("yolov8")))
