from zoo.engine.cli import main

from .model import InceptionModel

raise SystemExit(main(InceptionModel()))
