from zoo.engine.cli import main

from .model import SqueezeNetModel

raise SystemExit(main(SqueezeNetModel()))
