"""The public names of ``regen`` and ``regen.retry`` are exactly what ``__all__`` lists."""

from __future__ import annotations

import pathlib
import re
import types

import pytest

import regen
import regen.retry


@pytest.mark.parametrize("module", [regen, regen.retry])
def test_all_lists_every_public_name_once(module: types.ModuleType) -> None:
    public = {
        name
        for name, value in vars(module).items()
        if not name.startswith("_")
        and not isinstance(value, types.ModuleType)
        and name not in ("annotations",)
    }
    assert len(set(module.__all__)) == len(module.__all__)  # ruff's RUF022 keeps it sorted
    assert set(module.__all__) - {"__version__"} == public


def test_retry_core_imports_nothing_else_of_regen() -> None:
    root = pathlib.Path(regen.retry.__file__).parent
    for path in root.glob("*.py"):
        imports = re.findall(r"^\s*(?:from|import) (regen\.\w+)", path.read_text(), re.M)
        assert all(name == "regen.retry" for name in imports), (path.name, imports)
