"""Suite-wide test settings: slow tests run in CI (or with REGEN_SLOW=1), not on every run;
``database``, the URL of a test's own database on each store backend."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest
from tests.store.conftest import BACKENDS, postgres_database


@pytest.fixture(params=BACKENDS)
def database(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """The URL of this test's database, on each backend: a new SQLite file, or a new
    PostgreSQL database (skipped without a server, except in CI: see ``tests/store``)."""
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'regen.db'}"
        return
    with postgres_database() as url:
        yield url


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    if os.environ.get("CI") or os.environ.get("REGEN_SLOW"):
        return
    skip = pytest.mark.skip(reason="slow soak/crash test: runs in CI, or locally with REGEN_SLOW=1")
    for item in items:
        if "slow" in item.keywords:
            item.add_marker(skip)
