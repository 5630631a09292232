from zoo.engine.cli import main

from .model import ShuffleNetModel

raise SystemExit(main(ShuffleNetModel()))
