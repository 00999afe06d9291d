"""The public API of regen.sim, and its independence from the rest of regen."""

from __future__ import annotations

import ast
from pathlib import Path

import regen.sim


def _isort_style(name: str) -> tuple[int, str]:
    """RUF022's order: CONSTANTS, then Classes, then functions, each alphabetical."""
    kind = 0 if name.isupper() else 1 if name[:1].isupper() else 2
    return kind, name


def test_all_is_sorted_and_matches_what_is_public() -> None:
    public = {name for name in vars(regen.sim) if not name.startswith("_")}
    public -= {"annotations"}
    assert sorted(regen.sim.__all__, key=_isort_style) == regen.sim.__all__
    assert set(regen.sim.__all__) == public


def test_sim_imports_nothing_else_from_regen() -> None:
    package = Path(regen.sim.__file__).parent
    for module in package.glob("*.py"):
        tree = ast.parse(module.read_text(encoding="utf-8"))
        for node in ast.walk(tree):
            names = []
            if isinstance(node, ast.Import):
                names = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom) and node.module:
                names = [node.module]
            for name in names:
                assert not name.startswith("regen") or name.startswith("regen.sim"), (module, name)
