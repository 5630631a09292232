from zoo.engine.cli import main

from .model import MaxVitModel

raise SystemExit(main(MaxVitModel()))
