from zoo.engine.cli import main

from .model import MTCNN

raise SystemExit(main(MTCNN()))
