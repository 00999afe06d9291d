"""Engine tests run on a real SQLite file per test, under the retry core's test mode."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from regen.engine import Engine, Settings
from regen.retry import FakeClock, test_mode
from regen.store import SQLiteStore


@pytest.fixture
def clock() -> Iterator[FakeClock]:
    fake = FakeClock()
    with test_mode(clock=fake):
        yield fake


@pytest.fixture
def engine(tmp_path: Path, clock: FakeClock) -> Iterator[Engine]:
    eng = Engine(
        f"sqlite:///{tmp_path / 'regen.db'}", home=tmp_path, settings=Settings(lease_ttl=30.0)
    )
    try:
        yield eng
    finally:
        eng.close()


@pytest.fixture
def other_store(tmp_path: Path, engine: Engine) -> Iterator[SQLiteStore]:
    """The engine's database as another process sees it: a store of its own on the file."""
    store = SQLiteStore(tmp_path / "regen.db")
    try:
        yield store
    finally:
        store.close_now()
