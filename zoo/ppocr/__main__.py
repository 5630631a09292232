from zoo.engine.cli import main

from .model import PPOCR

raise SystemExit(main(PPOCR()))
