from zoo.engine.cli import main

from .model import AlexNetModel

raise SystemExit(main(AlexNetModel()))
