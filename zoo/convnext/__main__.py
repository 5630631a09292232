from zoo.engine.cli import main

from .model import ConvNeXtModel

raise SystemExit(main(ConvNeXtModel()))
