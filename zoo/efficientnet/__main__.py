from zoo.engine.cli import main

from .model import EfficientNetModel

raise SystemExit(main(EfficientNetModel()))
