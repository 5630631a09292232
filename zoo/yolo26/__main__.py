from zoo.engine.cli import main

from . import Model

raise SystemExit(main(Model()))
