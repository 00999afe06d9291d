"""regen's layers: who may import whom, no reaching into another package's private modules,
and every package's ``__all__`` listing exactly its public names.

The import table (DESIGN.md, "Layers"): the foundation sits below every layer but the
simulator; imports flow one way.
"""

from __future__ import annotations

import ast
import importlib
import sys
import types
from collections.abc import Iterator
from pathlib import Path

import pytest

import regen

SRC = Path(regen.__file__).parent

#: The regen packages each package may import, besides itself. ``None``: any of them.
#: ``regen`` is the top-level package, which re-exports the retry core.
ALLOWED: dict[str, frozenset[str] | None] = {
    "regen": frozenset({"foundation", "retry"}),
    "foundation": frozenset(),
    "retry": frozenset({"foundation"}),
    "providers": frozenset({"foundation", "retry"}),
    "store": frozenset({"foundation"}),
    "engine": frozenset({"foundation", "retry", "providers", "store"}),
    "health": frozenset({"foundation", "providers", "store"}),
    "service": frozenset({"foundation", "engine", "health"}),
    "sim": frozenset(),
    "cli": None,
}

#: Third-party libraries that one module alone may import: the seam they sit behind.
SEAMS = {"aiohttp": "providers/_transport.py"}


def _modules() -> Iterator[tuple[str, Path]]:
    """Every module of regen with the package it belongs to (``regen`` for the top level)."""
    for path in sorted(SRC.rglob("*.py")):
        parts = path.relative_to(SRC).parts
        yield (parts[0] if len(parts) > 1 else "regen"), path


def _dotted(path: Path) -> str:
    """``regen.engine._time`` for ``src/regen/engine/_time.py`` (a package for ``__init__``)."""
    parts = ["regen", *path.relative_to(SRC).with_suffix("").parts]
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _imports(path: Path) -> Iterator[tuple[str, int]]:
    """Every module a file imports, lazy and ``TYPE_CHECKING`` imports included, with its
    line; ``from m import n`` yields ``m.n`` (``n`` may be a module or a name)."""
    tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    here = _dotted(path).split(".")
    if path.name != "__init__.py":
        here = here[:-1]  # the package that holds the module
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                yield alias.name, node.lineno
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = here[: len(here) - node.level + 1]
                module = ".".join([*base, *([node.module] if node.module else [])])
            else:
                module = node.module or ""
            for alias in node.names:
                yield f"{module}.{alias.name}", node.lineno


def _regen_package(module: str) -> str | None:
    """The regen package an imported module belongs to (``regen`` for the top level)."""
    parts = module.split(".")
    if parts[0] != "regen":
        return None
    return parts[1] if len(parts) > 1 and (SRC / parts[1]).is_dir() else "regen"


def _is_private(name: str) -> bool:
    return name.startswith("_") and not (name.startswith("__") and name.endswith("__"))


def _violations() -> list[str]:
    found = []
    for package, path in _modules():
        where = path.relative_to(SRC)
        if package not in ALLOWED:
            found.append(f"{where}: package {package!r} has no row in the import table")
            continue
        allowed = ALLOWED[package]
        for module, line in _imports(path):
            target = _regen_package(module)
            if target is None:
                seam = SEAMS.get(module.split(".")[0])
                if seam is not None and where.as_posix() != seam:
                    found.append(f"{where}:{line}: imports {module} (only {seam} may)")
                continue
            if target == package:
                continue
            if allowed is not None and target not in allowed:
                found.append(f"{where}:{line}: {package} may not import regen.{target}")
            inner = module.split(".")[1 if target == "regen" else 2 :]
            if any(_is_private(part) for part in inner):
                found.append(f"{where}:{line}: imports {module}, private to regen.{target}")
    return found


def test_every_module_keeps_to_the_import_table() -> None:
    assert _violations() == []


def test_the_table_names_every_package_and_the_simulator_stands_apart() -> None:
    packages = {path.parent.name for path in SRC.glob("*/__init__.py")}
    assert packages <= set(ALLOWED)
    assert ALLOWED["sim"] == frozenset()
    assert ALLOWED["foundation"] == frozenset()


def test_a_forbidden_import_is_found(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The walk sees lazy imports, relative imports and private modules."""
    fake = tmp_path / "regen"
    (fake / "store").mkdir(parents=True)
    (fake / "retry").mkdir()
    (fake / "foundation").mkdir()
    (fake / "__init__.py").write_text("")
    (fake / "retry" / "__init__.py").write_text("")
    (fake / "store" / "__init__.py").write_text("from regen.foundation import RegenError\n")
    (fake / "store" / "_lazy.py").write_text(
        "def f():\n    from regen.retry import Policy\n    from ..retry import _state\n"
    )
    monkeypatch.setattr(sys.modules[__name__], "SRC", fake)
    assert _violations() == [
        "store/_lazy.py:2: store may not import regen.retry",
        "store/_lazy.py:3: store may not import regen.retry",
        "store/_lazy.py:3: imports regen.retry._state, private to regen.retry",
    ]


# --- public names -------------------------------------------------------------------------


def _packages() -> list[str]:
    return ["regen", *sorted(f"regen.{p.parent.name}" for p in SRC.glob("*/__init__.py"))]


def _isort_style(name: str) -> tuple[int, str]:
    """RUF022's order: CONSTANTS, then Classes, then the rest, each alphabetical."""
    kind = 0 if name.isupper() and len(name) > 1 else 1 if name[:1].isupper() else 2
    return kind, name


@pytest.mark.parametrize("name", _packages())
def test_all_is_sorted_and_lists_exactly_the_public_names(name: str) -> None:
    module = importlib.import_module(name)
    exported = list(getattr(module, "__all__", ()))
    assert exported, f"{name} has no __all__"
    public = {
        attr
        for attr, value in vars(module).items()
        if not attr.startswith("_")
        and not isinstance(value, types.ModuleType)
        and attr != "annotations"
    }
    assert len(set(exported)) == len(exported), f"{name}.__all__ repeats a name"
    assert exported == sorted(exported, key=_isort_style)
    assert {n for n in exported if not n.startswith("__")} == public
    assert all(hasattr(module, n) for n in exported)
