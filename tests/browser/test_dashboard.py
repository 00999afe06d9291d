"""The dashboard in a real browser: a run followed live, a retry from a clicked step after
its confirmation, a provider card changing when checked now, the pages behind a token.

The service runs in this process under uvicorn on loopback (``tests.service.server``),
with a worker and a health monitor watching the simulator.
"""

from __future__ import annotations

import contextlib
import os
import shutil
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from tests.browser.conftest import SCREENSHOTS, assert_fits, snap, tab_reaches
from tests.service.server import Served

from regen.engine import Engine
from regen.health import HealthMonitor, HealthSettings
from regen.providers import ProviderConfig, Registry, Secret
from regen.service import create_app
from regen.sim import SimServer, run_simulator

FLOW = "tests.dashboard.flows:album"
KEY = "sk-dashboard-test-0001"
DOCS_IMAGES = Path(__file__).resolve().parents[2] / "docs" / "images"


@pytest.fixture
def sim() -> Iterator[SimServer]:
    with run_simulator() as server:
        yield server


@pytest.fixture
def served(tmp_path: Path, sim: SimServer) -> Iterator[tuple[Served, Engine]]:
    engine = Engine(f"sqlite:///{tmp_path / 'regen.db'}", home=tmp_path)
    registry = Registry(
        [
            ProviderConfig(
                name="qwen",
                kind="openai",
                base_url=sim.openai_base_url,
                api_key=Secret(KEY),
                key_source="QWEN_API_KEY",
            )
        ]
    )
    monitor = HealthMonitor(registry, settings=HealthSettings(interval=60.0, timeout=2.0))
    app = create_app(engine, flows=[FLOW], execute=True, health=monitor, poll=0.1)
    started = app.router.lifespan_context

    @contextlib.asynccontextmanager
    async def lifespan(running: Any) -> AsyncIterator[None]:
        async with started(running):
            yield
        await registry.aclose()  # its connections belong to the server's loop

    app.router.lifespan_context = lifespan
    try:
        with Served(app) as server:
            yield server, engine
    finally:
        engine.close()


def start(url: str, flag: Path, pause: float = 0.3) -> str:
    body = {"flow": "album", "params": {"flag": str(flag), "pause": pause}}
    answer = httpx.post(f"{url}/api/runs", json=body, timeout=10)
    assert answer.status_code in (200, 201), answer.text
    return str(answer.json()["run"]["id"])


def wait_for_status(page: Any, run_id: str, status: str) -> None:
    page.wait_for_selector(f'tr[data-run="{run_id}"][data-status="{status}"]', timeout=30_000)


def test_the_runs_page_follows_a_run_live(
    served: tuple[Served, Engine], tmp_path: Path, page: Any
) -> None:
    server, _ = served
    page.goto(server.url)
    assert page.text_content("h1") == "Runs"
    run_id = start(server.url, tmp_path / "no-flag")
    wait_for_status(page, run_id, "succeeded")  # appeared and finished without a reload
    row = page.locator(f'tr[data-run="{run_id}"]')
    assert "album" in row.text_content()
    assert row.locator("progress").get_attribute("value") == "4"
    assert_fits(page)
    assert tab_reaches(page, f'a[href$="/runs/{run_id}"]')


def test_a_step_clicked_retries_the_run_from_it_after_a_confirmation(
    served: tuple[Served, Engine], tmp_path: Path, page: Any
) -> None:
    server, _ = served
    flag = tmp_path / "album-service-down"
    flag.touch()
    run_id = start(server.url, flag, pause=0.05)
    page.goto(server.url)
    wait_for_status(page, run_id, "failed")
    page.click(f'tr[data-run="{run_id}"] a')
    page.wait_for_selector("#steps")
    assert page.get_attribute('li[data-step="publish"]', "data-status") == "failed"
    assert "album service is down" in page.text_content("section.error")
    # The item grid: every image shown, prompts escaped, one attempt each.
    images = page.locator("li.item img")
    assert images.count() == 3
    page.wait_for_function(
        "[...document.querySelectorAll('li.item img')].every((i) => i.naturalWidth === 4)"
    )
    assert "<b>a dog</b>" in page.text_content("ul.items")
    assert page.locator("ul.items b").count() == 0
    assert page.locator("li.item .worker").count() == 3  # which worker ran each
    page.wait_for_function("document.querySelector('pre.stream')?.textContent.length > 0")
    assert page.text_content("pre.stream") == "Three pictures, one album."
    assert page.locator("#log li").count() > 5
    assert_fits(page)
    snap(page, "dashboard-run")

    assert tab_reaches(page, 'button.step-button[data-step="draw"]')
    page.keyboard.press("Enter")  # by keyboard: the step's "retry from here"
    dialog = page.locator("#confirm-retry")
    assert dialog.is_visible()
    assert "draw, caption, publish will run again" in page.text_content("#confirm-text")
    assert "publish acts outside" in page.text_content("#confirm-warning")
    flag.unlink()  # the album service is back
    page.click("#confirm-go")
    page.wait_for_selector('#run-status:text("succeeded")', timeout=30_000)
    assert page.get_attribute('li[data-step="publish"]', "data-status") == "succeeded"
    detail = httpx.get(f"{server.url}/api/runs/{run_id}", timeout=10).json()
    assert (detail["status"], detail["retry_count"]) == ("succeeded", 1)


def test_check_now_changes_a_provider_card(
    served: tuple[Served, Engine], sim: SimServer, page: Any
) -> None:
    server, _ = served
    page.goto(f"{server.url}/providers")
    card = page.locator('article[data-provider="qwen"]')
    if card.get_attribute("data-status") == "unknown":  # the first check is under way
        page.reload()
    assert card.get_attribute("data-status") == "healthy"
    assert card.locator('[data-field="quota"]').text_content().endswith("%")
    assert_fits(page)
    snap(page, "dashboard-providers-healthy")
    sim.script({"route": "models", "steps": ["auth"]})  # the provider now refuses the key
    assert tab_reaches(page, 'article[data-provider="qwen"] button.check')
    page.keyboard.press("Enter")
    page.wait_for_selector('article[data-provider="qwen"][data-status="unhealthy"]')
    assert card.locator('[data-field="error"]').text_content() == "401"
    assert KEY not in page.content()
    snap(page, "dashboard-providers")
    metrics = httpx.get(f"{server.url}/metrics", timeout=10).text
    assert 'regen_provider_healthy{provider="qwen"} 0.0' in metrics
    assert 'regen_provider_latency_seconds{provider="qwen"}' in metrics


def test_the_pages_sign_a_browser_in_when_the_server_needs_a_token(
    tmp_path: Path, page: Any
) -> None:
    token = "dashboard-token-0123456789"
    engine = Engine(f"sqlite:///{tmp_path / 'regen.db'}", home=tmp_path)
    try:
        with Served(create_app(engine, token=token)) as server:
            assert httpx.get(f"{server.url}/api/runs").status_code == 401
            page.goto(f"{server.url}/providers")
            assert "/login" in page.url
            page.fill("#t", token)
            page.keyboard.press("Enter")
            page.wait_for_url(f"{server.url}/providers")
            assert page.text_content("h1") == "Providers"
    finally:
        engine.close()


@pytest.fixture(scope="module", autouse=True)
def readme_screenshots() -> Iterator[None]:
    """With ``REGEN_UPDATE_SCREENSHOTS=1``: after the module, copy the run page and the
    monitor to docs/images, the README's pictures."""
    yield
    if os.environ.get("REGEN_UPDATE_SCREENSHOTS") != "1":
        return
    DOCS_IMAGES.mkdir(parents=True, exist_ok=True)
    for name in ("dashboard-run", "dashboard-providers"):
        shot = SCREENSHOTS / f"{name}.png"
        if shot.exists():
            shutil.copyfile(shot, DOCS_IMAGES / f"{name}.png")
