from zoo.engine.cli import main

from .model import GoogLeNetModel

raise SystemExit(main(GoogLeNetModel()))
