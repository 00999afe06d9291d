"""The store's tests: one contract every backend meets, run on each backend.

``store`` opens a fresh database of the backend under test; ``other`` opens a second
store on the same database, as another process would. A new backend adds its name to
``BACKENDS`` and a branch to :func:`_open`.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from pathlib import Path

import pytest

from regen.store import SQLiteStore, Store

BACKENDS = ["sqlite"]


def _open(backend: str, place: Path) -> Callable[[], Store]:
    if backend == "sqlite":
        return lambda: SQLiteStore(place / "regen.db")
    raise AssertionError(f"unknown backend {backend}")


@pytest.fixture(params=BACKENDS)
def opener(request: pytest.FixtureRequest, tmp_path: Path) -> Callable[[], Store]:
    """Opens a store on this test's database (each call: a new connection to it)."""
    return _open(request.param, tmp_path)


@pytest.fixture
async def store(opener: Callable[[], Store]) -> AsyncIterator[Store]:
    opened = opener()
    try:
        yield opened
    finally:
        await opened.close()


@pytest.fixture
async def other(store: Store, opener: Callable[[], Store]) -> AsyncIterator[Store]:
    """The same database, opened again: what another process sees and does."""
    opened = opener()
    try:
        yield opened
    finally:
        await opened.close()
