"""The engine's and the store's ``__all__`` list exactly their public names, sorted."""

from __future__ import annotations

import pytest

import regen.engine
import regen.store


@pytest.mark.parametrize("module", [regen.engine, regen.store])
def test_all_public_names_are_exported(module: object) -> None:
    public = {n for n in vars(module) if not n.startswith("_") and n != "annotations"}
    exported = set(module.__all__)  # type: ignore[attr-defined]
    assert exported == public
    assert list(module.__all__) == sorted(module.__all__)  # type: ignore[attr-defined]
