from zoo.engine.cli import main

from .model import RegNetModel

raise SystemExit(main(RegNetModel()))
