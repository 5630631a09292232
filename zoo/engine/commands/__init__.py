"""One module per command of `python -m zoo.<model> COMMAND`.

A command module provides `HELP` (one line for `--help`), `add_arguments(parser, model)` and
`run(model, args) -> exit code`. Adding a command means adding a module here: `zoo.engine.cli` finds it.
The order below is the order of `--help`; modules not listed come after, alphabetically.
"""
from __future__ import annotations

import importlib
import pkgutil

ORDER = ("build", "calibrate", "infer", "validate", "bench", "export", "serve")


def command_modules() -> dict:
    """{command name: module}, in help order."""
    names = [m.name for m in pkgutil.iter_modules(__path__) if not m.name.startswith("_")]
    names.sort(key=lambda n: (ORDER.index(n) if n in ORDER else len(ORDER), n))
    return {name: importlib.import_module(f"{__name__}.{name}") for name in names}
