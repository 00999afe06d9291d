"""The token, /healthz, /login, /metrics and /openapi.json over real HTTP."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from tests.service.conftest import FLOWS
from tests.service.server import Served, sse_events
from tests.service.waiting import wait_final

from regen.engine import Engine
from regen.service import create_app
from regen.store import Count, open_store

TOKEN = "tok-3f9a7c21b5d84e60"


@pytest.fixture
def guarded(engine: Engine) -> Iterator[str]:
    with Served(create_app(engine, flows=FLOWS, execute=True, token=TOKEN)) as served:
        yield served.url


def test_with_a_token_every_route_but_healthz_needs_it(guarded: str) -> None:
    with httpx.Client(base_url=guarded) as anonymous:
        assert anonymous.get("/healthz").json() == {"status": "ok"}
        for method, path in [
            ("GET", "/api/runs"),
            ("POST", "/api/runs"),
            ("GET", "/api/runs/x"),
            ("GET", "/api/runs/x/events"),
            ("GET", "/api/events"),
            ("GET", "/api/artifacts/" + "a" * 64),
            ("GET", "/metrics"),
            ("GET", "/openapi.json"),
            ("GET", "/docs"),
        ]:
            response = anonymous.request(method, path)
            assert response.status_code == 401, (method, path)
            assert "Bearer" in response.json()["detail"]
            assert TOKEN not in response.text
        wrong = anonymous.get("/api/runs", headers={"Authorization": "Bearer nope"})
        assert wrong.status_code == 401
    with httpx.Client(base_url=guarded, headers={"Authorization": f"Bearer {TOKEN}"}) as c:
        assert c.get("/api/runs").status_code == 200
        assert c.get("/openapi.json").status_code == 200


@pytest.mark.parametrize(
    ("settings", "message"),
    [
        ({"token": " "}, "the service's token is empty"),
        ({"execute": True, "worker_concurrency": 0}, "worker_concurrency=0: expected a whole"),
    ],
)
def test_an_app_that_could_not_serve_is_refused_when_made(
    engine: Engine, settings: dict[str, Any], message: str
) -> None:
    with pytest.raises(ValueError, match=message):
        create_app(engine, flows=FLOWS, **settings)


def test_a_browser_signs_in_once_and_its_event_source_is_let_in(guarded: str) -> None:
    with httpx.Client(base_url=guarded) as browser:
        assert browser.post("/login", json={"token": "wrong"}).status_code == 401
        assert "regen_token" not in browser.cookies
        assert browser.get("/login").status_code == 200  # the sign-in page
        signed = browser.post("/login", json={"token": TOKEN})
        assert signed.status_code == 204
        cookie = signed.headers["set-cookie"].lower()
        assert "httponly" in cookie
        assert "samesite=strict" in cookie
        run_id = browser.post("/api/runs", json={"flow": "story"}).json()["run"]["id"]
        wait_final(browser, run_id)
        with browser.stream("GET", f"/api/runs/{run_id}/events") as response:
            assert response.status_code == 200
            kinds = [e["event"] for e in sse_events(response) if "event" in e]
        assert kinds[-1] == "end"


def test_metrics_count_runs_attempts_give_ups_and_step_durations(
    client: httpx.Client, tmp_path: Path
) -> None:
    run_id = client.post(
        "/api/runs", json={"flow": "story", "params": {"words": 3, "cut_at": 1}}
    ).json()["run"]["id"]
    wait_final(client, run_id)
    flag = tmp_path / "fail"
    flag.touch()
    failed = client.post(
        "/api/runs", json={"flow": "pipeline", "params": {"fail_flag": str(flag)}}
    ).json()["run"]["id"]
    wait_final(client, failed)
    response = client.get("/metrics")
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/plain")
    lines = response.text.splitlines()
    assert 'regen_runs{status="succeeded"} 1.0' in lines
    assert 'regen_runs{status="failed"} 1.0' in lines
    assert 'regen_attempts_failed_total{kind="connection"} 1.0' in lines  # retried
    assert 'regen_attempts_failed_total{kind="unknown"} 1.0' in lines  # the attempt given up
    assert "regen_give_ups_total 0.0" in lines
    assert 'regen_step_duration_seconds_count{status="succeeded",step="write"} 1.0' in lines
    assert 'regen_step_duration_seconds_count{status="failed",step="analyze"} 1.0' in lines
    # A second scrape reads only what is new: nothing is counted twice.
    assert 'regen_attempts_failed_total{kind="connection"} 1.0' in client.get("/metrics").text


def test_metrics_show_every_workers_provider_counters_and_breaker_states(
    client: httpx.Client, database: str
) -> None:
    import asyncio  # noqa: PLC0415

    async def another_worker() -> None:
        store = open_store(database)
        try:
            await store.add_counts(
                [
                    Count(60.0, "dashscope", "", "attempts", 7),
                    Count(60.0, "dashscope", "timeout", "retries", 3),
                    Count(120.0, "dashscope", "timeout", "retries", 1),
                    Count(60.0, "", "", "saved_by_checkpoint", 2),
                ]
            )
            await store.update_state("breaker:dashscope:wanx", lambda _: ('{"state":"open"}', 0))
            await store.update_state("breaker:openai", lambda _: ('{"state":"half_open"}', 0))
        finally:
            await store.close()

    asyncio.run(another_worker())
    lines = client.get("/metrics").text.splitlines()
    assert (
        'regen_provider_calls_total{counter="attempts",kind="",provider="dashscope"} 7.0' in lines
    )
    assert (
        'regen_provider_calls_total{counter="retries",kind="timeout",provider="dashscope"} 4.0'
        in lines
    )
    assert (
        'regen_provider_calls_total{counter="saved_by_checkpoint",kind="",provider=""} 2.0' in lines
    )
    assert 'regen_provider_breaker_state{provider="dashscope"} 2.0' in lines
    assert 'regen_provider_breaker_state{provider="openai"} 1.0' in lines


def test_the_app_watches_for_alerts_while_it_runs(engine: Engine, tmp_path: Path) -> None:
    import asyncio  # noqa: PLC0415
    import sys  # noqa: PLC0415
    import time  # noqa: PLC0415

    from regen.health import AlertSettings  # noqa: PLC0415

    out = tmp_path / "alert.json"
    script = tmp_path / "alert.py"
    script.write_text(f"import sys; open({str(out)!r}, 'w').write(sys.stdin.read())")
    settings = AlertSettings(command=f"{sys.executable} {script}", interval_s=0.1)
    asyncio.run(engine.provider_state.update("breaker:wanx", lambda _: ({"state": "open"}, None)))
    with Served(create_app(engine, flows=FLOWS, alerts=settings)):
        deadline = time.monotonic() + 20
        while not out.exists() or not out.read_text():
            assert time.monotonic() < deadline, "no alert was sent"
            time.sleep(0.02)
    assert '"breaker_open"' in out.read_text()


def test_the_schema_names_every_route(client: httpx.Client) -> None:
    schema = client.get("/openapi.json").json()
    assert set(schema["paths"]) >= {
        "/api/runs",
        "/api/runs/{run_id}",
        "/api/runs/{run_id}/cancel",
        "/api/runs/{run_id}/retry",
        "/api/runs/{run_id}/retry/{step}",
        "/api/runs/{run_id}/checkpoint",
        "/api/runs/{run_id}/items",
        "/api/runs/{run_id}/events",
        "/api/events",
        "/api/artifacts/{ref}",
        "/healthz",
        "/login",
        "/metrics",
    }
    assert set(schema["paths"]["/api/runs/{run_id}"]) == {"get", "delete"}
    assert "StartRun" in schema["components"]["schemas"]


def test_the_app_mounts_inside_another_fastapi_app(engine: Engine) -> None:
    from fastapi import FastAPI  # noqa: PLC0415

    host = FastAPI()

    @host.get("/")
    async def home() -> dict[str, str]:
        return {"app": "mine"}

    host.mount("/regen", create_app(engine, flows=FLOWS))
    with Served(host) as served, httpx.Client(base_url=served.url) as c:
        assert c.get("/").json() == {"app": "mine"}
        created = c.post("/regen/api/runs", json={"flow": "story"})
        assert created.status_code == 201
        run_id = created.json()["run"]["id"]
        assert c.get(f"/regen/api/runs/{run_id}").json()["status"] == "queued"
        assert c.get("/regen/openapi.json").status_code == 200
