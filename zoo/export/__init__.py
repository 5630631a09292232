"""Export targets of `python -m zoo.<model> export FORMAT ...`: one module per format in this package.

A format module provides `HELP` (one line), `add_arguments(parser, model)` and `run(model, args) -> exit code`;
`zoo.engine.commands.export` finds it. Exporters reuse the runtime (`zoo.engine.networks`, `zoo.engine.engines`) to read weights and
define networks, so an export describes exactly the network that `build` would build.
"""
from __future__ import annotations

import importlib
import pkgutil


def format_modules() -> dict:
    """{format name: module}, alphabetically."""
    names = sorted(m.name for m in pkgutil.iter_modules(__path__) if not m.name.startswith("_"))
    return {name: importlib.import_module(f"{__name__}.{name}") for name in names}
