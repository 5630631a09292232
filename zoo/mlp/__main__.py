from zoo.engine.cli import main

from .model import MLPModel

raise SystemExit(main(MLPModel()))
