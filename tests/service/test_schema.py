"""Schemathesis against the served /openapi.json: no 5xx, no response that breaks the
schema, for generated requests to every route but the event streams, on each store backend
(CI runs it)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from tests.service.conftest import FLOWS
from tests.service.server import Served

from regen.engine import Engine
from regen.service import create_app

pytestmark = [pytest.mark.slow, pytest.mark.schemathesis]


@pytest.fixture
def served_schema(database: str, tmp_path: Path) -> Iterator[schemathesis.BaseSchema]:
    engine = Engine(database, home=tmp_path)
    # No worker: generated params may ask for endless work; runs stay queued.
    engine.sync.start("tests.service.flows:pipeline", {})
    try:
        with Served(create_app(engine, flows=FLOWS)) as served:
            schema = schemathesis.openapi.from_url(f"{served.url}/openapi.json")
            yield schema.exclude(path_regex=r".*/events$")
    finally:
        engine.close()


def test_the_api_keeps_to_its_schema(served_schema: schemathesis.BaseSchema) -> None:
    checked = []
    for result in served_schema.get_all_operations():
        operation = result.ok()

        @given(case=operation.as_strategy())
        @settings(
            max_examples=25,
            deadline=None,
            database=None,
            suppress_health_check=list(HealthCheck),
        )
        def call(case: schemathesis.Case) -> None:
            case.call_and_validate()

        call()
        checked.append(operation.label)
    assert "POST /api/runs" in checked
    assert not any(label.endswith("/events") for label in checked)
