"""Every model of the zoo, found by package: `python -m zoo` lists them.

A family registers itself by defining `FAMILY = Family(...)` in its package's `__init__.py` (`zoo/<name>/`); one
package may serve several command names (`FAMILIES = [...]`). Nothing else needs editing: packages of `zoo` without
a `FAMILY` (the runtime, vision, serving, export) are not models; a runnable one that is not a model (`zoo.triton`)
declares `TOOL = "what it does"`. The model class is named as "module:Class" and
imported only when asked for, so listing the zoo stays cheap.
"""
from __future__ import annotations

import importlib
import pkgutil
from dataclasses import dataclass, field


@dataclass(frozen=True)
class Family:
    name: str                          # the command: python -m zoo.<name>
    summary: str                       # one line
    model: str                         # "zoo.resnet.model:ResNetModel"
    variants: tuple[str, ...] = ()     # what the weights may say (resnet18, yolov5s, ...)
    tasks: tuple[str, ...] = ("classify",)
    trained: str = ""                  # trained weights the project installs, if any
    extra: dict = field(default_factory=dict)

    def load(self):
        """An instance of the family's ZooModel."""
        module, _, cls = self.model.partition(":")
        return getattr(importlib.import_module(module), cls)()


def families() -> list[Family]:
    """Every registered family, sorted by name."""
    import zoo
    found = []
    for info in pkgutil.iter_modules(zoo.__path__):
        if not info.ispkg:
            continue
        package = importlib.import_module(f"zoo.{info.name}")
        found += list(getattr(package, "FAMILIES", ())) + ([package.FAMILY] if hasattr(package, "FAMILY") else [])
    return sorted(found, key=lambda f: f.name)


def family(name: str) -> Family:
    for f in families():
        if f.name == name:
            return f
    raise KeyError(f"no model family {name!r} in the zoo (python -m zoo lists them)")


def table() -> str:
    rows = [(f.name, ",".join(f.tasks), " ".join(f.variants) or "-", f.summary) for f in families()]
    widths = [max(len(r[i]) for r in rows + [("family", "tasks", "variants", "")]) for i in range(3)]
    head = f"{'family':<{widths[0]}}  {'tasks':<{widths[1]}}  {'variants':<{widths[2]}}  summary"
    lines = [head] + [f"{a:<{widths[0]}}  {b:<{widths[1]}}  {c:<{widths[2]}}  {d}" for a, b, c, d in rows]
    lines.append(f"\n{len(rows)} families. Each is `python -m zoo.<family> build|infer|validate|bench ...`; "
                 "--help on any of them explains the flags.")
    return "\n".join(lines)
