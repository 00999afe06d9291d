"""``regen.providers`` exports exactly its ``__all__`` and imports only ``regen.retry``."""

from __future__ import annotations

import pathlib
import re
import types

import regen.providers


def test_all_lists_every_public_name_once() -> None:
    public = {
        name
        for name, value in vars(regen.providers).items()
        if not name.startswith("_")
        and not isinstance(value, types.ModuleType)
        and name != "annotations"
    }
    assert len(set(regen.providers.__all__)) == len(regen.providers.__all__)
    assert set(regen.providers.__all__) == public


def test_providers_import_only_the_retry_core_of_regen() -> None:
    root = pathlib.Path(regen.providers.__file__).parent
    for path in root.glob("*.py"):
        imports = re.findall(r"^\s*(?:from|import) (regen\.\w+)", path.read_text(), re.M)
        assert all(name in ("regen.retry", "regen.providers") for name in imports), (
            path.name,
            imports,
        )


def test_only_the_transport_module_imports_aiohttp() -> None:
    root = pathlib.Path(regen.providers.__file__).parent
    users = sorted(
        path.name
        for path in root.glob("*.py")
        if re.search(r"^\s*(?:from|import) aiohttp", path.read_text(), re.M)
    )
    assert users == ["_transport.py"]
