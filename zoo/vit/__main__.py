from zoo.engine.cli import main

from .model import ViTModel

raise SystemExit(main(ViTModel()))
