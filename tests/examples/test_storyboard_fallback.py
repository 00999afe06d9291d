"""The storyboard stage with a second text-to-image provider: while the stage's provider is
down, the fallback makes every image and each record names it; without the second key,
nothing changes."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import pytest
from examples.storyboard import StoryboardApp, Text2ImageStageProcessor
from examples.storyboard.generation import ProviderInfo
from examples.storyboard.records import Records
from examples.storyboard.testing import SIM_KEY_ENV, use_simulator
from examples.storyboard.validation import plan

import regen
from regen.sim import SimServer, run_simulator

BACKUP_KEY_ENV = "STORYBOARD_BACKUP_API_KEY"
PROMPTS = ("山间的晨雾", "港口的夜景", "雪地里的红色小屋", "麦田上的风车", "古城墙下的集市")


@pytest.fixture(autouse=True)
def _no_sleeping() -> Iterator[None]:
    with regen.test_mode():
        yield


@pytest.fixture(autouse=True)
def _sim_key(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(SIM_KEY_ENV, "sk-sim-test-0003")
    monkeypatch.delenv(BACKUP_KEY_ENV, raising=False)


@pytest.fixture
def down() -> Iterator[SimServer]:
    """The stage's provider, answering 503 from the first request on, for a minute."""
    with run_simulator(outage_after=1, outage_for=60) as server:
        yield server


@pytest.fixture
def backup() -> Iterator[SimServer]:
    with run_simulator() as server:
        yield server


@pytest.fixture
def app(tmp_path: Path, down: SimServer, backup: SimServer) -> Iterator[StoryboardApp]:
    storyboard_app = StoryboardApp(tmp_path / "home")
    use_simulator(down.openai_base_url, app=storyboard_app)  # "sim", the system default
    storyboard_app.records.add_provider(
        "backup",
        api_url=backup.openai_base_url,
        model_name="dall-e-3",
        api_key_env=BACKUP_KEY_ENV,
    )
    try:
        yield storyboard_app
    finally:
        storyboard_app.close()


def project(app: StoryboardApp) -> str:
    """A project whose model config names sim, then backup."""
    created = app.records.create_project("双网关", image_providers=["sim", "backup"])
    for prompt in PROMPTS:
        app.records.add_storyboard(created.id, prompt)
    return created.id


async def collect(events: AsyncIterator[dict[str, Any]]) -> list[dict[str, Any]]:
    return [event async for event in events]


def produced(sim: SimServer) -> int:
    return sum(int(row.get("produced", 0)) for row in sim.stats()["prompts"].values())


async def test_while_the_provider_is_down_the_fallback_makes_every_image(
    app: StoryboardApp, down: SimServer, backup: SimServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(BACKUP_KEY_ENV, "sk-backup-test-0004")
    pid = project(app)

    events = await collect(Text2ImageStageProcessor(app).process_stream(pid))

    done = events[-1]
    assert done["type"] == "done"
    assert done["stage"]["status"] == "completed"
    assert done["data"]["success_count"] == len(PROMPTS)
    records = app.records.images(project_id=pid)
    assert [r.status for r in records] == ["completed"] * len(PROMPTS)
    assert {r.model_provider for r in records} == {"backup"}
    assert all(r.attempts == 1 for r in records)  # served within the first attempt
    messages = [e["message"] for e in events if e["type"] == "info"]
    assert "sim 不可用时，由备用提供商 backup 生成图片" in messages
    assert sum("由备用提供商 backup 生成：sim 暂不可用" in m for m in messages) == len(PROMPTS)
    assert produced(down) == 0
    assert produced(backup) == len(PROMPTS)
    # sim's breaker opened after a few 503s: the later images never asked it.
    assert 1 <= down.stats()["outage"]["answered"] <= 5


async def test_images_the_providers_host_cannot_deliver_come_from_the_fallback(
    tmp_path: Path, backup: SimServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(BACKUP_KEY_ENV, "sk-backup-test-0004")
    # The stage's provider makes every image, but its image host answers XML for each.
    with run_simulator(faults={"fake_image": 1.0}) as dead_cdn:
        storyboard_app = StoryboardApp(tmp_path / "home")
        try:
            use_simulator(dead_cdn.openai_base_url, app=storyboard_app)
            storyboard_app.records.add_provider(
                "backup",
                api_url=backup.openai_base_url,
                model_name="dall-e-3",
                api_key_env=BACKUP_KEY_ENV,
            )
            pid = project(storyboard_app)
            events = await collect(Text2ImageStageProcessor(storyboard_app).process_stream(pid))
            records = storyboard_app.records.images(project_id=pid)
        finally:
            storyboard_app.close()
        undelivered = dead_cdn.stats()["routes"]["file"]["outcomes"]
        made = produced(dead_cdn)

    assert events[-1]["stage"]["status"] == "completed"
    assert [r.status for r in records] == ["completed"] * len(PROMPTS)
    assert {r.model_provider for r in records} == {"backup"}
    assert all(r.attempts == 1 for r in records)  # handed over within the first attempt
    # Each image sim made was fetched once, found bad, and counted against sim.
    assert undelivered == {"fake_image": made}
    assert 1 <= made <= len(PROMPTS)
    assert produced(backup) == len(PROMPTS)


async def test_without_the_second_key_there_is_no_fallback(
    app: StoryboardApp, down: SimServer, backup: SimServer
) -> None:
    pid = project(app)

    events = await collect(Text2ImageStageProcessor(app).process_stream(pid))

    assert events[-1]["stage"]["status"] == "failed"
    records = app.records.images(project_id=pid)
    assert [r.status for r in records] == ["failed"] * len(PROMPTS)
    assert {r.model_provider for r in records} == {"sim"}
    assert not any("备用" in e.get("message", "") for e in events)
    assert backup.stats()["requests"] == 0
    assert down.stats()["outage"]["answered"] == 3 * len(PROMPTS)  # 3 attempts each, no breaker


def test_the_fallbacks_are_the_projects_next_providers_then_the_default_with_a_key(
    tmp_path: Path,
) -> None:
    records = Records.at(tmp_path / "storyboard.db")
    url = "http://127.0.0.1:1/v1"
    for name, key_env, active, default in (
        ("first", "FIRST_KEY", True, False),
        ("keyless", "KEYLESS_KEY", True, False),
        ("retired", "RETIRED_KEY", False, False),
        ("second", "SECOND_KEY", True, False),
        ("default", "DEFAULT_KEY", True, True),
    ):
        records.add_provider(
            name,
            api_url=url,
            model_name="jimeng-4.0",
            api_key_env=key_env,
            is_active=active,
            is_default=default,
        )
    project = records.create_project(
        image_providers=["first", "keyless", "retired", "second", "first"]
    )
    records.add_storyboard(project.id, "一只猫")
    keys = {"FIRST_KEY": "k1", "RETIRED_KEY": "k3", "SECOND_KEY": "k4", "DEFAULT_KEY": "k5"}

    checked = plan(records, project.id, None, "run-1", environ=keys)

    assert checked.provider.name == "first"
    assert [(f.name, f.source) for f in checked.provider.fallback] == [
        ("second", "project"),
        ("default", "system"),
    ]
    # Checkpointed with the plan, and read back the same.
    assert ProviderInfo.from_dict(checked.to_dict()["provider"]) == checked.provider
    # Without their keys, there is no fallback.
    alone = plan(records, project.id, None, "run-2", environ={"FIRST_KEY": "k1"})
    assert alone.provider.fallback == ()
