"""The health routes served by uvicorn on loopback, checking providers on the simulator."""

from __future__ import annotations

import contextlib
import time
from collections.abc import AsyncIterator, Iterator
from typing import Any

import httpx
import pytest
from fastapi import FastAPI
from tests.service.server import Served

from regen.health import HealthMonitor, HealthSettings
from regen.providers import ProviderConfig, Registry
from regen.service import health_router
from regen.sim import SimServer
from regen.store import Store, open_store

from .conftest import KEY, TIMEOUT, WRONG_KEY, provider, requests

ROUTES = {
    "/api/models/health": {"get"},
    "/api/models/health/check": {"post"},
    "/api/models/health/{name}": {"get"},
    "/api/models/health/{name}/history": {"get"},
    "/api/models/health/{name}/check": {"post"},
    "/api/models/config": {"get"},
}


@contextlib.contextmanager
def serve(app: FastAPI) -> Iterator[httpx.Client]:
    """``app`` served on loopback, and a client to it."""
    with Served(app) as served, httpx.Client(base_url=served.url, timeout=10) as client:
        yield client


def build(
    sim: SimServer,
    store: Store | None,
    *,
    schedule: bool,
    interval: float = 60.0,
    providers: list[ProviderConfig] | None = None,
) -> FastAPI:
    registry = Registry(
        providers
        or [
            provider("good", sim.openai_base_url),
            provider("wanx", sim.dashscope_base_url, kind="dashscope"),
            provider("badkey", sim.openai_base_url, key=WRONG_KEY),
            provider("hung", sim.openai_base_url, fault="hang"),
        ]
    )
    monitor = HealthMonitor(
        registry, store=store, settings=HealthSettings(interval=interval, timeout=TIMEOUT)
    )

    @contextlib.asynccontextmanager
    async def lifespan(_app: FastAPI) -> AsyncIterator[None]:
        if schedule:
            await monitor.start()
        try:
            yield
        finally:
            await monitor.stop()
            await registry.aclose()

    app = FastAPI(lifespan=lifespan)
    app.include_router(health_router(monitor))
    return app


@pytest.fixture
def store(database: str) -> Iterator[Store]:
    opened = open_store(database)
    yield opened
    opened.close_now()


@pytest.fixture
def client(sim: SimServer, store: Store) -> Iterator[httpx.Client]:
    with serve(build(sim, store, schedule=False)) as opened:
        yield opened


def by_name(report: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {p["name"]: p for p in report["providers"]}


def test_statuses_are_unknown_until_checked_and_served_at_once(
    client: httpx.Client, sim: SimServer
) -> None:
    response = client.get("/api/models/health")
    assert response.status_code == 200
    report = response.json()
    assert report["all_healthy"] is False
    assert (report["interval_s"], report["timeout_s"]) == (60.0, TIMEOUT)
    assert [(p["name"], p["status"]) for p in report["providers"]] == [
        ("badkey", "unknown"),
        ("good", "unknown"),
        ("hung", "unknown"),
        ("wanx", "unknown"),
    ]
    assert requests(sim, "models") == 0


def test_check_now_waits_at_most_the_timeout_and_returns_every_result(
    client: httpx.Client,
) -> None:
    started = time.monotonic()
    response = client.post("/api/models/health/check")
    elapsed = time.monotonic() - started
    assert response.status_code == 200
    providers = by_name(response.json())
    assert {name: (p["status"], p["error"]) for name, p in providers.items()} == {
        "badkey": ("unhealthy", "401"),
        "good": ("healthy", None),
        "hung": ("unhealthy", "timeout"),
        "wanx": ("healthy", None),
    }
    assert elapsed < TIMEOUT + 1.0
    assert providers["good"]["quota_remaining"] == 99.95
    # What the check found is what the cached route serves from now on.
    assert by_name(client.get("/api/models/health").json()) == providers


def test_one_provider_its_check_and_its_history(client: httpx.Client, sim: SimServer) -> None:
    assert client.get("/api/models/health/good").json()["status"] == "unknown"
    for _ in range(3):
        checked = client.post("/api/models/health/good/check")
        assert checked.status_code == 200
        assert checked.json()["status"] == "healthy"
    assert requests(sim, "models") == 3  # only that provider was asked
    assert client.get("/api/models/health/good").json() == checked.json()
    history = client.get("/api/models/health/good/history", params={"limit": 2}).json()
    assert history["name"] == "good"
    assert len(history["checks"]) == 2
    assert history["checks"][0]["last_check"] == checked.json()["last_check"]
    assert history["checks"][0]["last_check"] > history["checks"][1]["last_check"]


def test_a_model_only_one_provider_serves_names_that_provider(sim: SimServer, store: Store) -> None:
    providers = [
        provider("openai", sim.openai_base_url, model="gpt-4o-mini"),
        provider("proxy", sim.openai_base_url, model="gpt-4o-mini", key=WRONG_KEY),
        provider("deepseek", sim.openai_base_url, model="deepseek-chat", key=WRONG_KEY),
        provider("qwenvl", sim.dashscope_base_url, kind="dashscope", image_model="wanx-v1"),
    ]
    with serve(build(sim, store, schedule=False, providers=providers)) as client:
        checked = client.post("/api/models/health/deepseek-chat/check")
        assert checked.status_code == 200
        assert (checked.json()["name"], checked.json()["error"]) == ("deepseek", "401")
        assert client.get("/api/models/health/deepseek-chat").json() == checked.json()
        history = client.get("/api/models/health/deepseek-chat/history").json()
        assert history["name"] == "deepseek"
        assert [c["error"] for c in history["checks"]] == ["401"]
        image = client.get("/api/models/health/wanx-v1").json()
        assert (image["name"], image["status"]) == ("qwenvl", "unknown")
        # A model two providers serve could be either: the answer names both.
        shared = client.get("/api/models/health/gpt-4o-mini")
        assert shared.status_code == 404
        assert "openai, proxy" in shared.json()["detail"]
        assert requests(sim, "models") == 1  # only deepseek was checked


def test_unknown_names_are_404_and_bad_limits_422(client: httpx.Client) -> None:
    for method, path in [
        ("GET", "/api/models/health/nope"),
        ("GET", "/api/models/health/nope/history"),
        ("POST", "/api/models/health/nope/check"),
    ]:
        response = client.request(method, path)
        assert response.status_code == 404, path
        assert "'nope'" in response.json()["detail"]
        assert "good" in response.json()["detail"]
    for limit in ("0", "1001", "many"):
        response = client.get("/api/models/health/good/history", params={"limit": limit})
        assert response.status_code == 422
    wrong_method = client.get("/api/models/health/check")  # the seed's check is a POST
    assert wrong_method.status_code == 405
    assert wrong_method.headers["allow"] == "POST"
    assert "POST /api/models/health/check" in wrong_method.json()["detail"]


def test_config_masks_every_key_and_no_route_shows_one(client: httpx.Client) -> None:
    config = client.get("/api/models/config")
    assert config.status_code == 200
    providers = {p["name"]: p for p in config.json()["providers"]}
    assert providers["good"]["has_key"] is True
    assert providers["good"]["api_key"].startswith("sk-")
    assert providers["wanx"]["kind"] == "dashscope"
    assert config.json()["timeout_s"] == TIMEOUT
    bodies = [
        config.text,
        client.post("/api/models/health/check").text,
        client.get("/api/models/health/badkey/history").text,
    ]
    for body in bodies:
        assert KEY not in body
        assert WRONG_KEY not in body


def test_the_openapi_schema_lists_every_route(client: httpx.Client) -> None:
    paths = client.get("/openapi.json").json()["paths"]
    assert {path: set(paths[path]) for path in ROUTES} == ROUTES
    assert "404" in paths["/api/models/health/{name}"]["get"]["responses"]


def test_a_started_monitor_checks_in_the_background(sim: SimServer, store: Store) -> None:
    with serve(build(sim, store, schedule=True, interval=0.05)) as client:
        deadline = time.monotonic() + 5
        while len(client.get("/api/models/health/good/history").json()["checks"]) < 2:
            assert time.monotonic() < deadline, "no background checks"
            time.sleep(0.02)
        providers = by_name(client.get("/api/models/health").json())
    assert providers["good"]["status"] == "healthy"
    assert providers["badkey"]["error"] == "401"
