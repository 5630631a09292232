from zoo.engine.cli import main

from zoo.swin.model import SwinModel

raise SystemExit(main(SwinModel("swin_v2")))
