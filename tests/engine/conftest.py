"""Engine tests run under the retry core's test mode, on each store backend: ``database``
(``tests/conftest.py``) is a real SQLite file per test, and a PostgreSQL database per test."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from regen.engine import Engine, Settings
from regen.retry import FakeClock, test_mode
from regen.store import Store, open_store


@pytest.fixture
def clock() -> Iterator[FakeClock]:
    fake = FakeClock()
    with test_mode(clock=fake):
        yield fake


@pytest.fixture
def engine(database: str, tmp_path: Path, clock: FakeClock) -> Iterator[Engine]:
    eng = Engine(database, home=tmp_path, settings=Settings(lease_ttl=30.0))
    try:
        yield eng
    finally:
        eng.close()


@pytest.fixture
def other_store(database: str, engine: Engine) -> Iterator[Store]:
    """The engine's database as another process sees it: a store of its own on it."""
    store = open_store(database)
    try:
        yield store
    finally:
        _close(store)


def _close(store: Store) -> None:
    import asyncio  # noqa: PLC0415

    asyncio.run(store.close())
