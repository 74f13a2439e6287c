"""The package's floors: no module imports one above it, and no import cycle exists.

Floors, bottom up: proc/protocol/security/config/client (shared vocabulary), then
sources, ring, engine, then the processes (pipeline, recording, view), then commands and cli.
Every import of an rtseg module, at module level or inside a function, is read from the
source, so a lazy import that goes upward is found too."""
from __future__ import annotations

import ast
import importlib
import pkgutil
from pathlib import Path

import rtseg

PACKAGE = Path(rtseg.__file__).parent
FLOORS = {
    "rtseg.proc": 0, "rtseg.protocol": 0,
    "rtseg.engine.models": 0,  # the table of model names and files: plain data, config validates against it
    "rtseg.config": 1, "rtseg.security": 1,
    "rtseg.client": 2, "rtseg.locate": 2, "rtseg.sources": 2,
    "rtseg.ring": 3, "rtseg.engine": 3,
    "rtseg.pipeline": 4, "rtseg.recording": 4, "rtseg.view": 4, "rtseg.bridges": 4,
    "rtseg.cluster": 4,  # the pipeline's own parts as Ray actors across hosts
    "rtseg.commands": 5, "rtseg.cli": 6,
}


def floor_of(module: str) -> int:
    parts = module.split(".")
    for n in range(len(parts), 0, -1):
        if ".".join(parts[:n]) in FLOORS:
            return FLOORS[".".join(parts[:n])]
    raise AssertionError(f"{module} has no floor: add its package to FLOORS in {__file__}")


def all_modules() -> list[str]:
    names = ["rtseg"]
    for info in pkgutil.walk_packages([str(PACKAGE)], prefix="rtseg."):
        names.append(info.name)
    return sorted(names)


def source_of(module: str) -> Path:
    path = PACKAGE.parent / Path(*module.split("."))
    return path / "__init__.py" if path.is_dir() else path.with_suffix(".py")


def imports_of(module: str) -> set[str]:
    tree = ast.parse(source_of(module).read_text())
    found: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.add(node.module)
        elif isinstance(node, ast.Import):
            found.update(a.name for a in node.names)
    return {m for m in found if m == "rtseg" or m.startswith("rtseg.")}


def test_no_module_imports_one_above_it():
    upward = []
    for module in all_modules():
        if module == "rtseg":
            continue
        for imported in imports_of(module):
            if imported != "rtseg" and floor_of(imported) > floor_of(module):
                upward.append(f"{module} (floor {floor_of(module)}) imports {imported} (floor {floor_of(imported)})")
    assert not upward, "\n".join(upward)


def test_no_import_cycles():
    graph = {m: {i for i in imports_of(m) if i in set(all_modules()) and i != "rtseg"} for m in all_modules()}
    done: set[str] = set()

    def visit(node: str, path: list[str]) -> None:
        if node in path:
            raise AssertionError("import cycle: " + " -> ".join(path[path.index(node):] + [node]))
        if node in done:
            return
        for nxt in sorted(graph.get(node, ())):
            if nxt.startswith(node + "."):
                continue  # a package importing its own submodules is not a cycle
            visit(nxt, path + [node])
        done.add(node)

    for module in graph:
        visit(module, [])


def test_every_module_imports_in_dependency_order():
    for module in sorted(all_modules(), key=lambda m: (m != "rtseg" and floor_of(m), m)):
        importlib.import_module(module)


def test_every_command_is_one_module_named_after_it():
    from rtseg.cli import SUBCOMMANDS

    for name, (module, _) in SUBCOMMANDS.items():
        assert module == "rtseg.commands." + name.replace("-", "_")
        mod = importlib.import_module(module)
        assert callable(mod.add_arguments) and callable(mod.main)


def test_no_test_module_imports_another_test_module():
    tests = Path(__file__).resolve().parent
    wrong = []
    for path in sorted(tests.rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text())):
            names = [node.module] if isinstance(node, ast.ImportFrom) and node.module and node.level == 0 else \
                [a.name for a in node.names] if isinstance(node, ast.Import) else []
            for name in names:
                if name.startswith("tests.") and not name.startswith("tests.helpers"):
                    wrong.append(f"{path.relative_to(tests.parent)} imports {name}")
            if isinstance(node, ast.ImportFrom) and node.level > 0:
                wrong.append(f"{path.relative_to(tests.parent)} has a relative import (use tests.helpers...)")
    assert not wrong, "shared test code belongs in tests/conftest.py or tests/helpers/:\n" + "\n".join(wrong)
