from zoo.engine.cli import main

from .zoo_model import YoloV5Model

raise SystemExit(main(YoloV5Model()))
