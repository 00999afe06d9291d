"""The daily-news flow executed by regen itself — ``regen run``, ``regen worker``, another
engine — with nothing but the environment: the flow's resources build the image client and
the data dir the way the app's ``auto`` command does by default."""

from __future__ import annotations

import asyncio
import hashlib
import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from examples.daily_news.news import NewsCandidate, pick_candidates
from examples.daily_news.posts import DraftBox, PostStore
from examples.daily_news.runtime import SimSettings, open_runtime
from examples.daily_news.workflow import FLOW_NAME, flow

from regen import ConfigError
from regen.engine import Engine, ItemStatus, RunStatus
from regen.sim import run_simulator

ROOT = Path(__file__).resolve().parents[2]
REGEN = Path(sys.executable).parent / "regen"
KEY = "sk-test-daily-news-0123456789"
TITLE = "每日新闻"  # the flow's default title
DATE = "2026-12-01"
#: Small timings: simulated tasks of 50 ms polled every 20 ms, 10 ms between attempts.
FAST = {
    "DAILY_NEWS_SIM_TASK_SECONDS": "0.05",
    "ALIYUN_IMAGE_POLL_INTERVAL_S": "0.02",
    "ALIYUN_IMAGE_RETRY_SLEEP_S": "0.01",
    "ALIYUN_IMAGE_TIMEOUT_S": "5",
    "ALIYUN_IMAGE_DOWNLOAD_TIMEOUT_S": "5",
}
_APP_VARIABLES = ("ALIYUN_IMAGE_", "DASHSCOPE_", "IMAGE_PROVIDER", "REGEN_", "DAILY_NEWS_")


@pytest.fixture(autouse=True)
def _clean_env(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in list(os.environ):
        if name.startswith(_APP_VARIABLES):
            monkeypatch.delenv(name)


def candidates(count: int, run: str = "") -> list[NewsCandidate]:
    """The batch's candidates: their prompts, and with ``run`` (its run id) their post ids."""
    return pick_candidates(TITLE, DATE, count, batch=run)


def regen(home: Path, *args: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    """The venv's ``regen`` console command, from the repository root, without PYTHONPATH."""
    base = {
        k: v for k, v in os.environ.items() if not k.startswith((*_APP_VARIABLES, "PYTHONPATH"))
    }
    return subprocess.run(
        [str(REGEN), "--home", str(home), *args],
        cwd=ROOT,
        env={**base, **env},
        capture_output=True,
        text=True,
        timeout=50,
        check=False,
    )


def assert_illustrated(data_dir: Path, news: list[NewsCandidate], run_id: str) -> None:
    """Each post of ``news`` has the seed's post.json, its image on disk, and one draft."""
    store = PostStore(data_dir)
    for item in news:
        post = store.load(item.post_id)
        assert post is not None, item.post_id
        assert post["run_id"] == run_id
        assert post["status"] == "draft_saved"
        assert post["batch"] == {"title": TITLE, "date": DATE, "index": item.index}
        image = post["platform"]["image"]
        assert image["path"] == f"assets/aliyun_{item.index:02d}.png"
        data = (store.post_dir(item.post_id) / image["path"]).read_bytes()
        assert hashlib.sha256(data).hexdigest() == image["sha256"]
        assert (image["format"], image["attempts"], image["attempt_errors"]) == ("png", 1, [])
        assert post["platform"]["images"] == [image]
        assert post["platform"]["draft"]["draft_id"].startswith("draft-")
    drafts = DraftBox(data_dir).all()
    assert sorted(d["post_id"] for d in drafts) == sorted(n.post_id for n in news)


async def illustrated(engine: Engine, run_id: str) -> dict[ItemStatus, list[str]]:
    by_status: dict[ItemStatus, list[str]] = {}
    for item in await engine.items(run_id, "illustrate", limit=100):
        by_status.setdefault(item.status, []).append(str(item.key))
    return by_status


# --- regen's own commands -------------------------------------------------------------------


def test_regen_run_makes_the_posts_offline_from_the_environment_alone(tmp_path: Path) -> None:
    data_dir = tmp_path / "data"
    done = regen(
        tmp_path,
        "run",
        "examples.daily_news.workflow:flow",
        "-p",
        f"date={DATE}",
        "-p",
        "count=2",
        env={"DAILY_NEWS_DATA_DIR": str(data_dir), **FAST},
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert "succeeded" in done.stdout
    with Engine(home=tmp_path) as engine:
        (run,) = engine.sync.list_runs()
        assert (run.flow, run.status) == (FLOW_NAME, RunStatus.SUCCEEDED)
        by_status = asyncio.run(illustrated(engine, run.id))
    c = candidates(2, run.id)
    assert by_status[ItemStatus.SUCCEEDED] == [c[0].post_id, c[1].post_id]
    assert sorted(p.name for p in (data_dir / "posts").iterdir()) == [c[0].post_id, c[1].post_id]
    assert_illustrated(data_dir, c[:2], run.id)


def test_a_queued_run_is_executed_by_regen_worker_with_only_the_environment(
    tmp_path: Path,
) -> None:
    with Engine(home=tmp_path) as engine:  # no runtime here: the run is only queued
        started = engine.sync.start(flow, {"date": DATE, "count": 2})
    assert started.run.status is RunStatus.QUEUED
    data_dir = tmp_path / "posts-elsewhere"
    done = regen(
        tmp_path,
        "worker",
        "--max-runs",
        "1",
        "--poll",
        "0.05",
        env={"DAILY_NEWS_DATA_DIR": str(data_dir), **FAST},
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert "stopped after 1 runs" in done.stdout
    with Engine(home=tmp_path) as engine:
        assert engine.sync.get_run(started.run.id).status is RunStatus.SUCCEEDED
    assert_illustrated(data_dir, candidates(2, started.run.id)[:2], started.run.id)


# --- another engine in this process ---------------------------------------------------------


async def test_another_engine_uses_dashscope_when_a_key_and_url_are_set(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    with Engine(home=tmp_path / "regen") as engine:
        run_id = (await engine.start(flow, {"date": DATE, "count": 1})).run.id
    c = candidates(1, run_id)
    with run_simulator(task_seconds=0.05) as sim:
        sim.script({"prompt": c[0].prompt, "steps": ["fake_image", "ok"]})
        for name, value in {
            **FAST,
            "DASHSCOPE_API_KEY": KEY,
            "DASHSCOPE_BASE_URL": sim.dashscope_base_url,
            "DAILY_NEWS_DATA_DIR": str(tmp_path / "data"),
        }.items():
            monkeypatch.setenv(name, value)
        with Engine(home=tmp_path / "regen") as other:
            run = await other.execute(run_id)
        submitted = sim.stats()["prompts"][c[0].prompt]["routes"]["dashscope_submit"]
    assert run.status is RunStatus.SUCCEEDED
    assert submitted == 2  # the XML "image" was retried against the keyed endpoint
    post = PostStore(tmp_path / "data").load(c[0].post_id)
    assert post is not None
    assert post["status"] == "draft_saved"
    assert post["platform"]["image"]["attempts"] == 2
    assert post["platform"]["image"]["attempt_errors"][0].startswith("bad_content:")
    assert post["platform"]["image"]["url"].startswith(sim.url)


def write_script(path: Path, rules: list[dict[str, Any]]) -> Path:
    path.write_text(json.dumps({"rules": rules}, ensure_ascii=False), encoding="utf-8")
    return path


async def test_a_scripted_give_up_is_backfilled_and_retried_when_asked(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    c = candidates(2)
    data_dir = tmp_path / "data"
    for name, value in {**FAST, "DAILY_NEWS_DATA_DIR": str(data_dir)}.items():
        monkeypatch.setenv(name, value)
    script = write_script(tmp_path / "faults.json", [{"prompt": c[0].prompt, "then": "auth"}])
    monkeypatch.setenv("DAILY_NEWS_SCRIPT", str(script))
    with Engine(home=tmp_path / "regen") as engine:
        run = await engine.run(flow, {"date": DATE, "count": 2})
        assert run.status is RunStatus.SUCCEEDED
        c = candidates(2, run.id)
        by_status = await illustrated(engine, run.id)
        assert by_status[ItemStatus.GIVEN_UP] == [c[0].post_id]
        assert by_status[ItemStatus.SUCCEEDED] == [c[1].post_id, c[2].post_id]
        store = PostStore(data_dir)
        post = store.load(c[0].post_id)
        assert post is not None
        assert post["status"] == "failed"
        generate = post["platform"]["image_generate"]
        assert (generate["attempts"], generate["give_up"]) == (1, True)  # 401: not retried
        assert generate["errors"][0].startswith("auth: ")
        assert "draft" not in post["platform"]

        # Retried from `illustrate` by a process that is told to try given-up posts again,
        # with the 401 gone: the post gets its image; the kept one is not generated again.
        monkeypatch.delenv("DAILY_NEWS_SCRIPT")
        monkeypatch.setenv("DAILY_NEWS_RETRY_FAILED", "1")
        await engine.retry(run.id, from_step="illustrate")
        run = await engine.execute(run.id)
        assert run.status is RunStatus.SUCCEEDED
        assert (await illustrated(engine, run.id))[ItemStatus.SUCCEEDED] == [
            c[0].post_id,
            c[1].post_id,
        ]
    again = store.load(c[0].post_id)
    assert again is not None
    assert again["status"] == "draft_saved"
    kept = store.load(c[1].post_id)
    assert kept is not None
    attempts = (store.post_dir(c[1].post_id) / "attempts.jsonl").read_text().splitlines()
    assert len(attempts) == 1  # one image for the post that had one


async def test_resources_that_cannot_open_fail_the_run_before_any_step(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    data_dir = tmp_path / "data"
    for name, value in {**FAST, "DAILY_NEWS_DATA_DIR": str(data_dir)}.items():
        monkeypatch.setenv(name, value)
    monkeypatch.setenv("IMAGE_PROVIDER", "openai")
    with Engine(home=tmp_path / "regen") as engine:
        run = await engine.run(flow, {"date": DATE, "count": 1})
        assert run.status is RunStatus.FAILED
        detail = await engine.detail(run.id)
        assert detail.resumable
        assert detail.run.error is not None
        assert detail.run.error["where"] == "resources"
        assert "use IMAGE_PROVIDER=aliyun" in detail.run.error["message"]
        assert not data_dir.exists()

        monkeypatch.delenv("IMAGE_PROVIDER")
        await engine.retry(run.id)
        run = await engine.execute(run.id)
    assert run.status is RunStatus.SUCCEEDED
    assert_illustrated(data_dir, candidates(1, run.id)[:1], run.id)


# --- the variables --------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("env", "message"),
    [
        ({"DAILY_NEWS_SIM_TASK_SECONDS": "-1"}, "DAILY_NEWS_SIM_TASK_SECONDS='-1'"),
        ({"DAILY_NEWS_SIM_TASK_SECONDS": "soon"}, "DAILY_NEWS_SIM_TASK_SECONDS='soon'"),
        ({"DAILY_NEWS_SEED": "x"}, "DAILY_NEWS_SEED='x': expected an integer"),
        ({"DAILY_NEWS_FAULTS": "hangs=0.1"}, "DAILY_NEWS_FAULTS='hangs=0.1': unknown fault"),
        ({"DAILY_NEWS_SCRIPT": "/nowhere/faults.toml"}, "no such file"),
    ],
)
def test_bad_simulator_variables_are_refused_by_name(env: dict[str, str], message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        SimSettings.from_env(env)


def test_simulator_variables_are_read() -> None:
    env = {
        "DAILY_NEWS_FAULTS": "hang=0.1",
        "DAILY_NEWS_SEED": "7",
        "DAILY_NEWS_SIM_TASK_SECONDS": "0",
    }
    settings = SimSettings.from_env(env)
    assert (dict(settings.faults), settings.seed, settings.task_seconds) == ({"hang": 0.1}, 7, 0.0)
    assert SimSettings.from_env({}) == SimSettings()


async def test_a_bad_retry_failed_value_is_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DAILY_NEWS_RETRY_FAILED", "maybe")
    with pytest.raises(ConfigError, match="DAILY_NEWS_RETRY_FAILED='maybe'"):
        async with open_runtime({}):
            pass
