from zoo.engine.cli import main

from .model import SwinModel

raise SystemExit(main(SwinModel("swin")))
