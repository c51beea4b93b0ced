"""The package's layers: every import in evt/ points down (or to the ground), never up.

The layers, lowest first: the log, the user's model, processing, then relay and ops
beside each other, then the CLI and the package's public face. ``evt.errors`` and
``evt.config`` are the ground every layer may stand on. An import inside a function or
under ``TYPE_CHECKING`` counts as much as one at the top of a file.
"""

from __future__ import annotations

import ast
import pathlib
import sys

import pytest

ROOT = pathlib.Path(__file__).parent.parent
PACKAGE = ROOT / "evt"

GROUND = {"evt.errors": 0, "evt.config": 0.5}  # configuration stands on the errors
LAYERS = {
    "evt.log": 1,
    "evt.model": 2,
    "evt.processing": 3,
    "evt.relay": 4,
    "evt.ops": 4,
    "evt.cli": 5,
}
TOP = 5  # evt/__init__.py, evt/__main__.py, evt.testing, evt.moved: the public face


def module_name(path: pathlib.Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def place(module: str) -> tuple[str, int]:
    "(the layer's name, its level) for an evt module."
    if module in GROUND:
        return module, GROUND[module]
    for prefix, level in LAYERS.items():
        if module == prefix or module.startswith(prefix + "."):
            return prefix, level
    return "evt", TOP


def imports(path: pathlib.Path):
    "(line, imported evt module) for every import in a file, however deep in it."
    package = module_name(path) if path.name == "__init__.py" else module_name(path).rpartition(".")[0]
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            for alias in node.names:
                if alias.name == "evt" or alias.name.startswith("evt."):
                    yield node.lineno, alias.name
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")[: len(package.split(".")) - node.level + 1]
                target = ".".join(base + ([node.module] if node.module else []))
            else:
                target = node.module or ""
            if not (target == "evt" or target.startswith("evt.")):
                continue
            if node.module is None or target == "evt":  # from . import x: each x is a module or a name
                for alias in node.names:
                    yield node.lineno, f"{target}.{alias.name}"
            else:
                yield node.lineno, target


def upward_imports() -> list[str]:
    found = []
    for path in sorted(PACKAGE.rglob("*.py")):
        own_layer, own_level = place(module_name(path))
        for line, target in imports(path):
            layer, level = place(target)
            if layer == own_layer:
                continue
            if level > own_level or (level == own_level and own_level != TOP):
                found.append(f"{path.relative_to(ROOT)}, line {line}: {module_name(path)} imports {target} ({layer} is not below {own_layer})")
    return found


def test_no_module_imports_a_layer_above_its_own():
    assert upward_imports() == []


def test_the_ground_imports_no_layer():
    for name in GROUND:
        path = ROOT / (name.replace(".", "/") + ".py")
        assert [t for _, t in imports(path) if t != "evt.errors"] == [], name


@pytest.mark.parametrize(
    "layer, source",
    [
        ("evt/log/store.py", "def f():\n    from ..model import registry\n"),
        ("evt/log/store.py", "from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    from evt.model.registry import Model\n"),
        ("evt/model/aggregates.py", "from ..processing.runner import Runner\n"),
        ("evt/relay/engine.py", "from ..ops import upcast\n"),
        ("evt/processing/runner.py", "import evt.cli.output\n"),
        ("evt/log/store.py", "from .. import testing\n"),
    ],
)
def test_the_check_catches_an_upward_import(tmp_path, monkeypatch, layer, source):
    "The scan names file and line for upward imports at the top, in functions, under TYPE_CHECKING."
    copy = tmp_path / "evt"
    for path in PACKAGE.rglob("*.py"):
        target = copy / path.relative_to(PACKAGE)
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(path.read_text())
    planted = copy / pathlib.Path(layer).relative_to("evt")
    planted.write_text(planted.read_text() + "\n" + source)
    monkeypatch.setattr(sys.modules[__name__], "ROOT", tmp_path)
    monkeypatch.setattr(sys.modules[__name__], "PACKAGE", copy)
    found = upward_imports()
    assert len(found) == 1 and found[0].startswith(f"{layer}, line "), found


def test_the_old_module_paths_still_import_with_a_warning():
    import importlib
    import subprocess

    code = (
        "import warnings; warnings.simplefilter('error')\n"
        "try:\n    import evt.aggregates\nexcept DeprecationWarning as e:\n    print(e)\n"
        "warnings.simplefilter('ignore')\n"
        "from evt.projections import configured; from evt.processing.projections import configured as new\n"
        "print(configured is new)\n"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT)
    assert proc.stdout.splitlines() == [
        "evt.aggregates is now evt.model.aggregates; the old name will go in a later release",
        "True",
    ], proc.stderr
    assert importlib.import_module("evt.model.aggregates").history
