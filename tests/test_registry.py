"""The registry finds every model package, and each registration points at a working model and command."""
import importlib
import importlib.util
import subprocess
import sys
from pathlib import Path

import pytest

from zoo.engine.cli import make_parser
from zoo.engine.model import ZooModel
from zoo.registry import families, family

ROOT = Path(__file__).resolve().parents[1]
RUNNABLE = sorted(p.parent.name for p in (ROOT / "zoo").glob("*/__main__.py"))
# a runnable package is a model command unless it declares itself a tool (TOOL = "what it does") instead
TOOLS = sorted(name for name in RUNNABLE if hasattr(importlib.import_module(f"zoo.{name}"), "TOOL"))
MODEL_PACKAGES = [name for name in RUNNABLE if name not in TOOLS]


def test_every_runnable_package_is_registered():
    # a package with a __main__ is a model command; it must be listed, and nothing else may be
    commands = {f.name for f in families()}
    assert commands == set(MODEL_PACKAGES)


@pytest.mark.parametrize("name", TOOLS)
def test_tools_are_not_families(name):
    package = importlib.import_module(f"zoo.{name}")
    assert isinstance(package.TOOL, str) and package.TOOL
    assert not hasattr(package, "FAMILY") and not hasattr(package, "FAMILIES")


@pytest.mark.parametrize("name", MODEL_PACKAGES)
def test_registration_loads_its_model(name):
    f = family(name)
    model = f.load()
    assert isinstance(model, ZooModel)
    assert model.name == name, f"{f.model} says its name is {model.name!r}"
    assert f.summary and f.tasks
    assert importlib.util.find_spec(f"zoo.{name}.__main__") is not None
    make_parser(model)  # every command's flags are valid for this model


def test_unknown_family_is_one_clear_error():
    with pytest.raises(KeyError, match="no model family 'nope'"):
        family("nope")


def test_python_m_zoo_lists_every_family():
    out = subprocess.run([sys.executable, "-m", "zoo"], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    listed = {line.split()[0] for line in out.stdout.splitlines()[1:] if line.strip() and not line.startswith(" ")}
    assert set(MODEL_PACKAGES) <= listed
    assert f"{len(MODEL_PACKAGES)} families" in out.stdout
