"""The import layers of ladc: data flows one way (data -> training -> engines -> deploy -> bench), with `runs/` and
`ladc/measure.py` below every stage, `commands/` above them and the CLI on top. Every import in every module, those
inside functions included, is read with `ast` and checked against the order below; a module may import from its own
layer or a lower one.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "ladc"

# Lowest first. A module belongs to the longest entry that is its name or a package above it.
LAYERS = (
    # ladc.data.tasks, the GLUE task registry, is pure data (it imports ladc.errors alone) that run dirs, configs and
    # cards read: it sits at the bottom, whatever its folder (ladc/tasks.py would say so; see the note in the report)
    ("ladc", "ladc.errors", "ladc.data.tasks"),
    ("ladc.runs", "ladc.measure"),
    ("ladc.data",),
    ("ladc.training",),
    ("ladc.engines",),
    ("ladc.deploy",),
    ("ladc.bench",),
    ("ladc.commands",),
    ("ladc.cli_options",),
    ("ladc.cli", "ladc.cli_use", "ladc.__main__"),
)

# (importing module, imported module) -> why the upward import stays for now
ALLOWED: dict[tuple[str, str], str] = {}


def _module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _is_module(name: str) -> bool:
    relative = Path(*name.split("."))
    return (PACKAGE.parent / relative).with_suffix(".py").is_file() or (PACKAGE.parent / relative).is_dir()


def _imported(tree: ast.AST, importer: str) -> list[tuple[str, int]]:
    """(ladc module, line) for every import of a ladc module anywhere in the tree (functions included);
    `from package import module` names the module."""
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found += [(alias.name, node.lineno) for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            assert not node.level, f"{importer}:{node.lineno}: a relative import (ladc imports absolutely)"
            base = node.module or ""
            for alias in node.names:
                full = f"{base}.{alias.name}"
                found.append((full if _is_module(full) else base, node.lineno))
    return list(dict.fromkeys((name, line) for name, line in found if name == "ladc" or name.startswith("ladc.")))


def _layer(name: str) -> int:
    matches = [(len(entry), index) for index, layer in enumerate(LAYERS) for entry in layer
               if name == entry or (entry != "ladc" and name.startswith(entry + "."))]  # fmt: skip
    if not matches:
        raise AssertionError(f"{name} is in no layer: add it (or its package) to LAYERS in tests/test_layers.py")
    return max(matches)[1]


def _modules() -> dict[str, Path]:
    return {_module_name(path): path for path in sorted(PACKAGE.rglob("*.py"))}


def upward_imports() -> list[str]:
    """Every import from a higher layer not in ALLOWED, as `module:line imports other (layer a < b)`."""
    found = []
    for name, path in _modules().items():
        for imported, line in _imported(ast.parse(path.read_text(encoding="utf-8")), name):
            if _layer(imported) > _layer(name) and (name, imported) not in ALLOWED:
                found.append(f"{name}:{line} imports {imported} (layer {_layer(name)} < {_layer(imported)})")
    return found


def test_no_module_imports_from_a_higher_layer():
    assert upward_imports() == []


def test_every_allowed_upward_import_still_exists_and_has_a_reason():
    """An allowance outlives its reason unnoticed unless it is dropped the day the import goes."""
    modules = _modules()
    for (importer, imported), reason in ALLOWED.items():
        assert reason.strip()
        assert importer in modules, f"ALLOWED names {importer}, which no longer exists"
        imports = {name for name, _ in _imported(ast.parse(modules[importer].read_text(encoding="utf-8")), importer)}
        assert imported in imports, f"{importer} no longer imports {imported}: drop it from ALLOWED"
        assert _layer(imported) > _layer(importer), f"{importer} -> {imported} is not upward: drop it from ALLOWED"


def test_every_module_is_in_a_layer():
    for name in _modules():
        _layer(name)


@pytest.mark.parametrize(
    ("source", "expected"),
    [
        ("from ladc.deploy.runners import TorchRunner", ["ladc.deploy.runners"]),
        ("def f():\n    from ladc.bench import bench\n", ["ladc.bench.bench"]),  # inside a function, a submodule
        ("import ladc.cli as cli", ["ladc.cli"]),
        ("import numpy\nfrom pathlib import Path", []),
    ],
)
def test_imports_are_found_wherever_they_are_written(source, expected):
    assert [name for name, _ in _imported(ast.parse(source), "ladc.data.example")] == expected


def test_a_data_module_importing_a_deploy_one_is_caught():
    assert _layer("ladc.data.training_data") < _layer("ladc.deploy.runners")
    assert _layer("ladc.runs.runs") < _layer("ladc.data.data") < _layer("ladc.training.train")
    assert _layer("ladc.training.models") < _layer("ladc.deploy.export") < _layer("ladc.bench.bench")
    assert _layer("ladc.bench.bench") < _layer("ladc.commands.pipeline") < _layer("ladc.cli")
    assert _layer("ladc.measure") == _layer("ladc.runs.io") and _layer("ladc.data.tasks") < _layer("ladc.runs.io")
