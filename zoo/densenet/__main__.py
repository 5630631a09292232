from zoo.engine.cli import main

from .model import DenseNetModel

raise SystemExit(main(DenseNetModel()))
