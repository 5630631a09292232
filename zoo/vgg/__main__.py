from zoo.engine.cli import main

from .model import VGGModel

raise SystemExit(main(VGGModel()))
