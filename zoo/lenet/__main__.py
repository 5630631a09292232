from zoo.engine.cli import main

from .model import LeNetModel

raise SystemExit(main(LeNetModel()))
