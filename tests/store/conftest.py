"""The store's tests: one contract every backend meets, run on each backend.

``store`` opens a fresh database of the backend under test; ``other`` opens a second
store on the same database, as another process would. A new backend adds its name to
``BACKENDS`` and a branch to :func:`_open`.

PostgreSQL: each test gets a database of its own, created on the server named by
``REGEN_TEST_POSTGRES_URL`` (default ``postgresql://postgres@127.0.0.1:5432/test``) and
dropped afterwards. Without a server the PostgreSQL tests are skipped, except in CI
(``CI=true``), where they fail.
"""

from __future__ import annotations

import contextlib
import os
import uuid
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path

import pytest

from regen.store import PostgresStore, SQLiteStore, Store

BACKENDS = ["sqlite", "postgres"]
POSTGRES_URL = os.environ.get(
    "REGEN_TEST_POSTGRES_URL", "postgresql://postgres@127.0.0.1:5432/test"
)


def _unavailable(reason: str) -> None:
    message = f"PostgreSQL at {POSTGRES_URL} is not usable ({reason})"
    if os.environ.get("CI", "").lower() in ("1", "true", "yes"):
        pytest.fail(f"{message}; CI runs every PostgreSQL test", pytrace=False)
    pytest.skip(f"{message}; start it or set REGEN_TEST_POSTGRES_URL")


@contextlib.contextmanager
def postgres_database() -> Iterator[str]:
    """A new, empty database on the test server, dropped afterwards: its URL."""
    try:
        import psycopg  # noqa: PLC0415
    except ImportError:
        _unavailable("psycopg is not installed: pip install 'regen[postgres]'")
        raise
    name = f"regen_test_{uuid.uuid4().hex[:12]}"
    try:
        admin = psycopg.connect(POSTGRES_URL, autocommit=True, connect_timeout=3)
    except psycopg.OperationalError as exc:
        _unavailable(str(exc).strip().splitlines()[0])
        raise
    with admin:
        admin.execute(f'CREATE DATABASE "{name}"')
        base = POSTGRES_URL.rsplit("/", 1)[0]
        try:
            yield f"{base}/{name}"
        finally:
            admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def _open(backend: str, place: Path, stack: contextlib.ExitStack) -> Callable[[], Store]:
    if backend == "sqlite":
        return lambda: SQLiteStore(place / "regen.db")
    if backend == "postgres":
        url = stack.enter_context(postgres_database())
        return lambda: PostgresStore(url)
    raise AssertionError(f"unknown backend {backend}")


@pytest.fixture(params=BACKENDS)
def opener(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Callable[[], Store]]:
    """Opens a store on this test's database (each call: a new connection to it)."""
    with contextlib.ExitStack() as stack:
        yield _open(request.param, tmp_path, stack)


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
