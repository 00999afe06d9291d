"""Service tests: an engine on each store backend (``database``: a real SQLite file, a real
PostgreSQL database), its app served on loopback."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from tests.service.server import Served

from regen.engine import Engine
from regen.service import create_app

FLOWS = ["tests.service.flows:story", "tests.service.flows:pipeline"]


@pytest.fixture
def engine(database: str, tmp_path: Path) -> Iterator[Engine]:
    eng = Engine(database, home=tmp_path)
    try:
        yield eng
    finally:
        eng.close()


@pytest.fixture
def served(engine: Engine) -> Iterator[Served]:
    with Served(create_app(engine, flows=FLOWS, execute=True, keepalive=0.5)) as server:
        yield server


@pytest.fixture
def client(served: Served) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=served.url, timeout=10) as http:
        yield http
