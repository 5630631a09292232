from zoo.engine.cli import main

from .model import MNASNetModel

raise SystemExit(main(MNASNetModel()))
