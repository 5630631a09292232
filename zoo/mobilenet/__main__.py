from zoo.engine.cli import main

from .model import MobileNetModel

raise SystemExit(main(MobileNetModel()))
