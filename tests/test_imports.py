"""The direction of dependencies, read from the source with `ast` (nothing is imported):

    wts/  <-  zoo/trt_api/ (TensorRT's names, the plugin registries)  <-  layers/, plugins/  <-  the runtime
    (zoo/engine/)  <-  families, serving, export  <-  tools/

Every import counts, at module level or inside a function: an import moved into a function still ties the two
modules together, so hiding a circle that way fails here too.
"""
from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("wts", "layers", "plugins", "zoo", "tools")


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def project_modules() -> dict[str, Path]:
    found = {}
    for package in PACKAGES:
        for path in sorted((ROOT / package).rglob("*.py")):
            found[_module_name(path)] = path
    return found


def imports_of(name: str, path: Path, modules: dict[str, Path]) -> set[str]:
    """The project modules `path` imports (absolute and relative; `from a import b` counts a.b when it is one)."""
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            targets = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")[:len(package.split(".")) - node.level + 1]
                module = ".".join(base + ([node.module] if node.module else []))
            else:
                module = node.module or ""
            names = [f"{module}.{alias.name}" for alias in node.names]
            # `from . import core` imports the module core; the package itself counts only for names defined in it
            targets = names + ([module] if not all(n in modules for n in names) else [])
        else:
            continue
        found |= {t for t in targets if t in modules and t != name}
    return found


def import_graph() -> dict[str, set[str]]:
    modules = project_modules()
    return {name: imports_of(name, path, modules) for name, path in modules.items()}


def circles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components of more than one module (Tarjan), each sorted."""
    index, low, stack, on_stack, found = {}, {}, [], set(), []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in sorted(graph[v]):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return found


def test_the_finder_sees_a_circle_and_its_absence():
    assert circles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]
    assert circles({"a": {"b"}, "b": set(), "c": {"a", "b"}}) == []


def test_the_graph_reads_relative_and_nested_imports():
    graph = import_graph()
    assert "zoo.engine.engines" in graph["zoo.engine.commands.build"]       # from ..engines import ...
    assert "zoo.engine.files" in graph["zoo.mtcnn.model"]                   # inside a function


def test_no_import_circle_among_the_projects_modules():
    found = circles(import_graph())
    assert not found, "import circles: " + "; ".join(" <-> ".join(c) for c in found)


LOW_LEVELS = {"layers": ("zoo",), "plugins": ("zoo",), "wts": ("zoo", "layers", "plugins"),
              "zoo.trt_api": ("zoo", "layers", "plugins")}
ALLOWED_BELOW = {"layers": ("zoo.trt_api",), "plugins": ("zoo.trt_api",), "wts": (), "zoo.trt_api": ("zoo.trt_api",)}


@pytest.mark.parametrize("level", sorted(LOW_LEVELS))
def test_low_levels_import_only_what_lies_below_them(level):
    """layers/ and plugins/ import neither zoo.vision nor the runtime: only the TensorRT facade (and wts)."""
    graph = import_graph()
    bad = []
    for module, targets in graph.items():
        if module != level and not module.startswith(f"{level}."):
            continue
        for target in targets:
            above = any(target == p or target.startswith(f"{p}.") for p in LOW_LEVELS[level])
            allowed = any(target == p or target.startswith(f"{p}.") for p in ALLOWED_BELOW[level])
            if above and not allowed:
                bad.append(f"{module} -> {target}")
    assert not bad, bad
