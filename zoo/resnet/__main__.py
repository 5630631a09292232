from zoo.engine.cli import main

from .model import ResNetModel

raise SystemExit(main(ResNetModel()))
