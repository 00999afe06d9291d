"""The daily-news batch end to end: regen's engine and store, the simulator's DashScope,
posts and drafts on disk. Faults are scripted by prompt (exact assertions) or drawn from a
seeded profile (invariants)."""

from __future__ import annotations

import asyncio
import hashlib
import io
import json
import os
import subprocess
import sys
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from examples.daily_news import app, images
from examples.daily_news.demo import DEMO_COUNT, run_demo
from examples.daily_news.images import AliyunImageClient, GeneratedPicture, image_policy
from examples.daily_news.news import NewsCandidate, pick_candidates
from examples.daily_news.posts import DraftBox, PostStore
from examples.daily_news.runtime import Runtime
from rich.console import Console

import regen
from regen.engine import ItemStatus, RunStatus, StepStatus
from regen.providers import image_from_bytes
from regen.sim import SimServer, render_png, run_simulator

ROOT = Path(__file__).resolve().parents[2]
KEY = "sk-test-daily-news-0123456789"
TITLE = "每日新闻"
DATE = "2025-06-01"
#: The seed's policy with waits shortened: 0.5 s per generation or download, 10 ms apart.
FAST = {
    "ALIYUN_IMAGE_TIMEOUT_S": "0.5",
    "ALIYUN_IMAGE_RETRY_SLEEP_S": "0.01",
    "ALIYUN_IMAGE_DOWNLOAD_TIMEOUT_S": "0.5",
}


@pytest.fixture(autouse=True)
def _clean_env(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in list(os.environ):
        if name.startswith(("ALIYUN_IMAGE_", "DASHSCOPE_", "IMAGE_PROVIDER", "REGEN_")):
            monkeypatch.delenv(name)


@pytest.fixture(scope="module")
def _sim() -> Iterator[SimServer]:
    with run_simulator(task_seconds=0.05) as server:
        yield server


@pytest.fixture
def sim(_sim: SimServer) -> SimServer:
    _sim.reset()
    _sim.script(replace=True)
    return _sim


def candidates(
    count: int = 3, title: str = TITLE, date: str = DATE, *, run: str = ""
) -> list[NewsCandidate]:
    """The batch's candidates: their prompts, and with ``run`` (its run id) their post ids."""
    return pick_candidates(title, date, count, batch=run)


async def batch(
    sim: SimServer,
    data_dir: Path,
    *,
    count: int = 3,
    console: Console | None = None,
    key: str | None = "",
    retry_given_up: bool = False,
    env: dict[str, str] | None = None,
) -> dict[str, Any]:
    client = AliyunImageClient(sim.dashscope_base_url, KEY, poll_interval=0.01)
    runtime = Runtime(
        client, data_dir, console, policy=image_policy(env or FAST), retry_given_up=retry_given_up
    )
    return await app.run_batch(runtime, title=TITLE, count=count, date=DATE, key=key)


def prompt_stats(sim: SimServer, prompt: str) -> tuple[int, int]:
    """(tasks submitted, images produced) for a prompt."""
    entry = sim.stats()["prompts"].get(prompt)
    if entry is None:
        return 0, 0
    return int(entry["routes"].get("dashscope_submit", 0)), int(entry["produced"])


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


# --- scripted faults: exact outcomes ---------------------------------------------------------


async def test_scripted_faults_give_up_skip_and_backfill_to_count(
    sim: SimServer, tmp_path: Path
) -> None:
    c = candidates()
    sim.script(
        {"prompt": c[0].prompt, "steps": ["hang", "ok"]},  # timeout, then an image
        {"prompt": c[1].prompt, "then": "fake_image"},  # XML instead of an image, always
        {"prompt": c[2].prompt, "steps": ["auth"]},  # 401: not retried
        {"prompt": c[3].prompt, "steps": ["invalid_param"]},  # bad size: not retried
        {"prompt": c[4].prompt, "steps": ["missing_fields", "ok"]},  # no task id, then ok
    )
    out = io.StringIO()
    summary = await batch(sim, tmp_path, console=Console(file=out, width=200))
    c = candidates(run=summary["run_id"])
    ok, failed = [c[0], c[4], c[5]], [c[1], c[2], c[3]]

    # the summary
    assert summary["status"] == "succeeded"
    assert summary["succeeded"] == [p.post_id for p in ok]
    assert summary["failed"] == [p.post_id for p in failed]
    assert summary["skipped"] == 9
    assert summary["drafts"] == summary["succeeded"]
    assert summary["failed_attempts"] == 1 + 3 + 1 + 1 + 1

    # post.json on disk
    store = PostStore(tmp_path)
    first = store.load(c[0].post_id)
    assert first is not None
    assert first["status"] == "draft_saved"
    image = first["platform"]["image"]
    assert image["path"] == "assets/aliyun_01.png"
    assert sha256(store.post_dir(c[0].post_id) / image["path"]) == image["sha256"]
    assert (image["format"], image["width"], image["height"]) == ("png", 1024, 1024)
    assert image["attempts"] == 2
    assert len(image["attempt_errors"]) == 1
    assert image["attempt_errors"][0].startswith("timeout: AttemptTimeout: phase 'generate'")
    assert first["platform"]["images"] == [image]
    generate = first["platform"]["image_generate"]
    assert (generate["attempts"], generate["give_up"]) == (2, False)
    assert generate["errors"] == image["attempt_errors"]
    assert first["platform"]["draft"]["draft_id"].startswith("draft-")

    fifth = store.load(c[4].post_id)
    assert fifth is not None
    assert fifth["platform"]["image"]["attempts"] == 2
    assert fifth["platform"]["image"]["attempt_errors"][0].startswith("bad_response:")
    sixth = store.load(c[5].post_id)
    assert sixth is not None
    assert sixth["status"] == "draft_saved"
    assert "image_generate" not in sixth["platform"]  # no retry, no attempt summary
    assert sixth["platform"]["image"]["attempt_errors"] == []

    for news, attempts, kind in (
        (c[1], 3, "bad_content"),
        (c[2], 1, "auth"),
        (c[3], 1, "bad_request"),
    ):
        post = store.load(news.post_id)
        assert post is not None
        assert post["status"] == "failed"
        generate = post["platform"]["image_generate"]
        assert generate["give_up"] is True
        assert generate["attempts"] == attempts
        assert len(generate["errors"]) == attempts
        assert all(e.startswith(f"{kind}: ") for e in generate["errors"])
        assert "draft" not in post["platform"]
        assert "image" not in post["platform"]
        assert not list(store.assets_dir(news.post_id).glob("aliyun_*"))
    assert "HTTP 401" in store.load(c[2].post_id)["platform"]["image_generate"]["errors"][0]
    for news in c[6:]:
        assert store.load(news.post_id) is None  # never tried: the quota was met

    # each attempt's result or error in the post's log
    lines = (store.post_dir(c[0].post_id) / "attempts.jsonl").read_text().splitlines()
    assert [json.loads(line)["ok"] for line in lines] == [False, True]

    # drafts: succeeded posts only, once each
    drafts = DraftBox(tmp_path).all()
    assert sorted(d["post_id"] for d in drafts) == sorted(summary["succeeded"])

    # regen's store
    with app.open_engine(tmp_path) as engine:
        detail = await engine.detail(summary["run_id"])
        assert detail.run.status is RunStatus.SUCCEEDED
        assert detail.run.business_key == app.business_key(TITLE, DATE)
        assert [(s.name, s.status) for s in detail.steps] == [
            ("pick_candidates", StepStatus.SUCCEEDED),
            ("illustrate", StepStatus.SUCCEEDED),
            ("save_draft", StepStatus.SUCCEEDED),
        ]
        assert detail.steps[1].output == {
            "total": 15,
            "succeeded": 3,
            "given_up": 3,
            "skipped": 9,
            "quota": 3,
        }
        items = await engine.items(summary["run_id"], "illustrate", limit=100)
        assert [(i.key, i.status) for i in items] == [
            (n.post_id, status)
            for n, status in zip(
                c,
                [
                    ItemStatus.SUCCEEDED,
                    ItemStatus.GIVEN_UP,
                    ItemStatus.GIVEN_UP,
                    ItemStatus.GIVEN_UP,
                    ItemStatus.SUCCEEDED,
                    ItemStatus.SUCCEEDED,
                    *[ItemStatus.SKIPPED] * 9,
                ],
                strict=True,
            )
        ]
        given_up = items[1]
        assert given_up.errors[0].startswith("bad_content: ImageGenerationAbandoned:")
        assert items[0].output["attempts"] == 2
        assert items[0].output["image"] == image["path"]
        assert items[0].output["artifact"]["artifact"] == image["sha256"]
        assert (
            engine.artifacts.read(image["sha256"])
            == (store.post_dir(c[0].post_id) / image["path"]).read_bytes()
        )
        drafted = await engine.items(summary["run_id"], "save_draft", limit=100)
        assert [(i.key, i.status) for i in drafted] == [
            (n.post_id, ItemStatus.SUCCEEDED) for n in ok
        ]
        events = Counter(e.type for e in await engine.read_events(summary["run_id"], limit=10_000))
    assert events["image.given_up"] == 3
    assert events["image.generated"] == 3
    assert events["image.attempt_failed"] == 7
    assert events["draft.saved"] == 3

    # what the simulator generated (and would have billed), per prompt
    assert [prompt_stats(sim, n.prompt) for n in c[:6]] == [
        (2, 1),
        (3, 3),
        (1, 0),
        (1, 0),
        (2, 1),
        (1, 1),
    ]
    assert all(prompt_stats(sim, n.prompt) == (0, 0) for n in c[6:])

    # the console shows the retries and the give-ups
    text = out.getvalue()
    assert "attempt 1 failed (timeout:" in text
    assert "gave up after 3 attempts (bad_content)" in text
    assert "gave up after 1 attempt (auth)" in text


async def test_a_download_past_its_timeout_makes_a_new_image_and_the_post_succeeds(
    sim: SimServer, tmp_path: Path
) -> None:
    c = candidates(1)
    # The task succeeds, then the download of its image never answers; the next one does.
    sim.script({"prompt": c[0].prompt, "route": "file", "steps": ["hang", "ok"]})
    env = {**FAST, "ALIYUN_IMAGE_TIMEOUT_S": "5", "ALIYUN_IMAGE_DOWNLOAD_TIMEOUT_S": "0.3"}
    summary = await batch(sim, tmp_path, count=1, env=env)
    c = candidates(1, run=summary["run_id"])

    assert summary["status"] == "succeeded"
    assert summary["succeeded"] == [c[0].post_id]
    assert summary["failed_attempts"] == 1
    post = PostStore(tmp_path).load(c[0].post_id)
    assert post is not None
    assert post["status"] == "draft_saved"
    image = post["platform"]["image"]
    assert image["attempts"] == 2
    (error,) = image["attempt_errors"]
    assert error.startswith("timeout: AttemptTimeout: phase 'download' timed out after 0.3s")
    assert post["platform"]["images"] == [image]
    generate = post["platform"]["image_generate"]
    assert (generate["attempts"], generate["errors"], generate["give_up"]) == (2, [error], False)
    # The download was not fetched again: a new task made a new image (and was billed).
    assert prompt_stats(sim, c[0].prompt) == (2, 2)
    routes = sim.stats()["prompts"][c[0].prompt]["routes"]
    assert routes["file"] == 2
    assert sim.stats()["prompts"][c[0].prompt]["faults"] == {"hang": 1}


async def test_running_the_same_batch_again_resumes_it_and_makes_no_new_image(
    sim: SimServer,
    tmp_path: Path,
) -> None:
    first = await batch(sim, tmp_path)
    before = sim.stats()["prompts"]
    again = await batch(sim, tmp_path)
    assert again == first
    assert sim.stats()["prompts"] == before
    assert len(DraftBox(tmp_path).all()) == 3


async def test_other_params_for_the_same_title_and_date_are_refused(
    sim: SimServer, tmp_path: Path
) -> None:
    await batch(sim, tmp_path, count=1)
    with pytest.raises(app.BatchMismatch, match=r"count=1 \(not 2\)"):
        await batch(sim, tmp_path, count=2)
    other = await batch(sim, tmp_path, count=2, key="another batch")
    assert len(other["succeeded"]) == 2


async def test_when_candidates_run_out_the_run_is_partial_and_every_give_up_recorded(
    sim: SimServer,
    tmp_path: Path,
) -> None:
    c = candidates(2)
    for news in c[1:]:
        sim.script({"prompt": news.prompt, "then": "auth"})
    summary = await batch(sim, tmp_path, count=2)
    c = candidates(2, run=summary["run_id"])
    assert summary["status"] == "partial"
    assert summary["succeeded"] == [c[0].post_id]
    assert summary["skipped"] == 0
    assert summary["failed"] == [n.post_id for n in c[1:]]
    assert summary["drafts"] == [c[0].post_id]
    store = PostStore(tmp_path)
    assert all(store.load(n.post_id)["platform"]["image_generate"]["give_up"] for n in c[1:])


async def test_no_success_at_all_fails_the_run_without_drafts(
    sim: SimServer, tmp_path: Path
) -> None:
    for news in candidates(1):
        sim.script({"prompt": news.prompt, "then": "permission"})
    summary = await batch(sim, tmp_path, count=1)
    assert summary["status"] == "failed"
    assert len(summary["failed"]) == 5
    assert summary["drafts"] == []
    assert DraftBox(tmp_path).all() == []


# --- seed §6.1, fourth case: the batch backfills (one-attempt function monkeypatched) -------


async def test_a_batch_with_failures_still_reaches_count(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    c = candidates()
    failing = {c[0].prompt: TimeoutError("生图请求超时"), c[2].prompt: RuntimeError("401 鉴权失败")}
    calls: Counter[str] = Counter()

    async def generate(prompt: str, **kwargs: Any) -> GeneratedPicture:
        calls[prompt] += 1
        if prompt in failing:
            raise failing[prompt]
        return GeneratedPicture(image_from_bytes(render_png(prompt, 32, 32)), task_id="t")

    monkeypatch.setattr(images, "generate_aliyun_image", generate)
    runtime = Runtime(
        AliyunImageClient("http://127.0.0.1:9/api/v1", KEY), tmp_path, policy=image_policy({})
    )  # the seed's defaults: 3 attempts, 2 s apart
    with regen.test_mode() as clock:
        summary = await app.run_batch(runtime, title=TITLE, count=3, date=DATE)
    c = candidates(run=summary["run_id"])
    assert summary["status"] == "succeeded"
    assert summary["succeeded"] == [c[1].post_id, c[3].post_id, c[4].post_id]
    assert summary["failed"] == [c[0].post_id, c[2].post_id]
    assert [calls[n.prompt] for n in c[:5]] == [3, 1, 1, 1, 1]
    assert clock.sleeps == [2.0, 2.0]
    post = PostStore(tmp_path).load(c[0].post_id)
    assert post is not None
    assert post["status"] == "failed"
    assert post["platform"]["image_generate"]["attempts"] == 3
    assert post["platform"]["image_generate"]["give_up"] is True
    assert sorted(d["post_id"] for d in DraftBox(tmp_path).all()) == summary["succeeded"]


# --- a seeded random fault profile: invariants ------------------------------------------------

#: Heavy weather: most first attempts fail, many posts are given up, some batches run out.
PROFILE = {
    "hang": 0.03,
    "reset": 0.06,
    "server_error": 0.06,
    "missing_fields": 0.06,
    "task_failed": 0.06,
    "fake_image": 0.3,
    "truncated_image": 0.1,
    "html_200": 0.04,
    "auth": 0.03,
    "invalid_param": 0.03,
}


@pytest.mark.parametrize("seed", [4, 5, 10])
async def test_a_seeded_fault_profile_keeps_the_invariants(tmp_path: Path, seed: int) -> None:
    count = 4
    with run_simulator(task_seconds=0.02, faults=PROFILE, seed=seed) as server:
        summary = await batch(server, tmp_path, count=count)
        stats = {n.prompt: prompt_stats(server, n.prompt) for n in candidates(count)}
    c = candidates(count, run=summary["run_id"])
    succeeded, failed = summary["succeeded"], summary["failed"]
    assert failed
    assert summary["failed_attempts"] > len(failed)
    # the count is reached, or every candidate was tried
    assert len(succeeded) == count or len(succeeded) + len(failed) == len(c)
    assert summary["status"] == ("succeeded" if len(succeeded) == count else "partial")
    store = PostStore(tmp_path)
    with app.open_engine(tmp_path) as engine:
        items = await engine.items(summary["run_id"], "illustrate", limit=100)
        events = await engine.read_events(summary["run_id"], limit=10_000)
    assert {i.status for i in items} <= {
        ItemStatus.SUCCEEDED,
        ItemStatus.GIVEN_UP,
        ItemStatus.SKIPPED,
    }
    given_up_events = Counter(e.data["post_id"] for e in events if e.type == "image.given_up")
    for news in c:
        post = store.load(news.post_id)
        submitted, produced = stats[news.prompt]
        assert submitted <= 3  # never more tasks than ALIYUN_IMAGE_MAX_ATTEMPTS
        if news.post_id in failed:  # recorded once, with at most three errors, no draft
            assert post is not None
            assert post["status"] == "failed"
            generate = post["platform"]["image_generate"]
            assert generate["give_up"] is True
            assert 1 <= generate["attempts"] <= 3
            assert 1 <= len(generate["errors"]) <= 3
            assert given_up_events[news.post_id] == 1
            assert "draft" not in post["platform"]
        elif news.post_id in succeeded:
            assert post is not None
            assert post["status"] == "draft_saved"
            image = post["platform"]["image"]
            assert sha256(store.post_dir(news.post_id) / image["path"]) == image["sha256"]
            assert len(image["attempt_errors"]) == image["attempts"] - 1 <= 2
            assert produced >= 1
        else:
            assert post is None
            assert submitted == 0
    assert sorted(d["post_id"] for d in DraftBox(tmp_path).all()) == sorted(succeeded)


# --- an interrupted run (Ctrl-C) resumes; its give-ups stay given up ----------------------------


async def test_an_interrupted_run_resumes_and_keeps_its_give_ups(
    sim: SimServer, tmp_path: Path
) -> None:
    c = candidates()
    sim.script(
        {"prompt": c[0].prompt, "then": "fake_image"}, {"prompt": c[1].prompt, "steps": ["hang"]}
    )  # the first is given up after 3 images; the second hangs until cancelled
    env = {**FAST, "ALIYUN_IMAGE_TIMEOUT_S": "30"}
    task = asyncio.create_task(batch(sim, tmp_path, env=env))
    for _ in range(500):
        if prompt_stats(sim, c[1].prompt)[0] == 1:
            break
        await asyncio.sleep(0.01)
    task.cancel()  # what Ctrl-C does to the running batch
    with pytest.raises(asyncio.CancelledError):
        await task
    with app.open_engine(tmp_path) as engine:
        run = (await engine.list_runs())[0]
    assert run.status is RunStatus.FAILED
    assert run.error["type"] == "Interrupted"
    c = candidates(run=run.id)

    out = io.StringIO()
    summary = await batch(sim, tmp_path, env=env, console=Console(file=out, width=300))
    assert summary["run_id"] == run.id
    assert summary["status"] == "succeeded"
    assert summary["failed"] == [c[0].post_id]
    assert prompt_stats(sim, c[0].prompt)[0] == 3  # the give-up was kept, not retried
    assert summary["succeeded"] == [c[1].post_id, c[2].post_id, c[3].post_id]
    assert "given up in an earlier execution of this run[/red]" not in out.getvalue()
    assert "given up in an earlier execution of this run (bad_content, 3 attempts)" in (
        out.getvalue()
    )

    # asked to, a resumed run tries its given-up posts again
    sim.script({"prompt": c[0].prompt, "steps": ["ok"]}, replace=True)
    with app.open_engine(tmp_path) as engine:
        await engine.retry(run.id, from_step="illustrate")
    again = await batch(sim, tmp_path, env=env, retry_given_up=True)
    assert again["run_id"] == run.id
    assert again["succeeded"][0] == c[0].post_id


async def test_two_batches_for_one_title_and_date_never_share_or_touch_a_post(
    sim: SimServer, tmp_path: Path
) -> None:
    first = await batch(sim, tmp_path, key="morning")
    store, drafts = PostStore(tmp_path), DraftBox(tmp_path)
    before = {post["post_id"]: post for post in store.all()}
    drafts_before = drafts.all()
    sim.script({"prompt": candidates()[0].prompt, "then": "auth"})  # fails in the second only

    second = await batch(sim, tmp_path, key="evening")

    assert second["run_id"] != first["run_id"]
    assert first["succeeded"] == [n.post_id for n in candidates(run=first["run_id"])[:3]]
    assert second["failed"] == [candidates(run=second["run_id"])[0].post_id]
    assert not set(first["succeeded"]) & set(second["succeeded"] + second["failed"])
    after = {post["post_id"]: post for post in store.all()}
    assert {k: after[k] for k in before} == before  # the first batch's posts untouched
    assert all(after[k]["status"] == "draft_saved" for k in first["succeeded"])
    assert all(d in drafts.all() for d in drafts_before)
    by_post = Counter(d["post_id"] for d in drafts.all())
    assert sorted(by_post) == sorted(first["succeeded"] + second["succeeded"])
    assert set(by_post.values()) == {1}  # one draft per post


def test_a_batch_failed_on_a_bad_key_runs_again_once_the_key_is_fixed(tmp_path: Path) -> None:
    good, bad = KEY, KEY.replace("0123", "9999")
    args = ("auto", "--count", "2", "--date", DATE)
    with run_simulator(task_seconds=0.02, keys=(good,)) as server:
        env = {"DASHSCOPE_BASE_URL": server.dashscope_base_url, "IMAGE_PROVIDER": "aliyun"}
        refused = command(*args, cwd=tmp_path, env={**env, "DASHSCOPE_API_KEY": bad})
        assert refused.returncode == 1, refused.stderr
        assert "0 of 2 posts illustrated (10 given up" in refused.stdout
        assert "a retry does not mend: fix DASHSCOPE_API_KEY" in refused.stdout
        requests = server.stats()["requests"]
        assert requests == 10  # one refused submit per candidate, none retried

        fixed = command(*args, cwd=tmp_path, env={**env, "DASHSCOPE_API_KEY": good})
        assert fixed.returncode == 0, fixed.stderr
        assert server.stats()["requests"] > requests
    assert "resumed from its failed step" in fixed.stdout
    assert "failed on auth in an earlier execution of this run" in fixed.stdout
    assert "interruption" not in fixed.stdout
    assert "2 of 2 posts illustrated (0 given up" in fixed.stdout
    assert bad not in refused.stdout + refused.stderr


# --- the example's demo (python -m examples.daily_news demo) ------------------------------------


def test_the_demo_shows_retries_a_give_up_and_backfill(tmp_path: Path) -> None:
    out = io.StringIO()
    summary = run_demo(tmp_path, Console(file=out, width=200))
    c = candidates(DEMO_COUNT, date=app.today(), run=summary["run_id"])
    assert summary["status"] == "succeeded"
    assert summary["succeeded"] == [c[0].post_id, c[2].post_id, c[4].post_id]
    assert summary["failed"] == [c[1].post_id, c[3].post_id]
    assert summary["drafts"] == summary["succeeded"]
    assert [summary["simulator"][n.prompt] for n in c[:5]] == [
        {"tasks": 2, "images": 1},
        {"tasks": 3, "images": 3},
        {"tasks": 2, "images": 1},
        {"tasks": 1, "images": 0},
        {"tasks": 1, "images": 1},
    ]
    text = out.getvalue()
    assert "waits shortened" in text
    assert "attempt 1 failed" in text
    assert "gave up" in text
    assert (tmp_path / "logs" / "daily_news.log").read_text().count("gave up") >= 2


# --- the seed's command ---------------------------------------------------------------------------


def command(
    *args: str,
    cwd: Path,
    env: dict[str, str] | None = None,
) -> subprocess.CompletedProcess[str]:
    base = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(
            ("ALIYUN_IMAGE_", "DASHSCOPE_", "IMAGE_PROVIDER", "REGEN_", "DAILY_NEWS_")
        )
    }
    base["PYTHONPATH"] = os.pathsep.join([str(ROOT / "src"), str(ROOT)])  # this checkout's regen
    base["ALIYUN_IMAGE_POLL_INTERVAL_S"] = "0.02"
    base["COLUMNS"] = "400"  # one console line per message, whatever the terminal
    return subprocess.run(
        [sys.executable, "-m", "examples.daily_news", *args],
        cwd=cwd,
        env={**base, **(env or {})},
        capture_output=True,
        text=True,
        timeout=50,
        check=False,
    )


def test_the_seed_command_runs_offline_and_resumes(tmp_path: Path) -> None:
    args = (
        "auto",
        "--title",
        TITLE,
        "--count",
        "3",
        "--assets-glob",
        "empty/pics/*",
        "--date",
        DATE,
        "--sim-task-seconds",
        "0.05",
    )
    done = command(*args, "--json", cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    summary = json.loads(done.stdout)
    assert summary["status"] == "succeeded"
    assert len(summary["succeeded"]) == 3
    assert "images: regen's built-in simulator at http://127.0.0.1:" in done.stderr
    assert "offline (no IMAGE_PROVIDER and no DASHSCOPE_API_KEY set" in done.stderr
    store = PostStore(tmp_path / "data")
    for post_id in summary["succeeded"]:
        assert (store.assets_dir(post_id) / f"aliyun_{post_id[-2:]}.png").is_file()
        assert store.load(post_id)["status"] == "draft_saved"
    assert (tmp_path / "data" / "logs" / "daily_news.log").is_file()
    again = command(*args, cwd=tmp_path)
    assert again.returncode == 0, again.stderr
    assert summary["run_id"] in again.stdout
    assert "3 of 3 posts illustrated" in again.stdout


def test_local_assets_are_attached_as_references(tmp_path: Path) -> None:
    pics = tmp_path / "pics"
    pics.mkdir()
    (pics / "a.png").write_bytes(render_png("a", 16, 16))
    (pics / "b.png").write_bytes(render_png("b", 16, 16))
    done = command(
        "auto",
        "--count",
        "2",
        "--assets-glob",
        str(pics / "*"),
        "--date",
        DATE,
        "--data-dir",
        "out",
        "--sim-task-seconds",
        "0.02",
        "--json",
        cwd=tmp_path,
    )
    assert done.returncode == 0, done.stderr
    posts = [PostStore(tmp_path / "out").load(p) for p in json.loads(done.stdout)["succeeded"]]
    assert [p["platform"]["reference_assets"] for p in posts if p] == [
        ["assets/reference_a.png"],
        ["assets/reference_b.png"],
    ]


def test_options_are_read_from_daily_news_variables(tmp_path: Path) -> None:
    env = {"DAILY_NEWS_DATA_DIR": "news-out", "DAILY_NEWS_COUNT": "1", "DAILY_NEWS_DATE": DATE}
    done = command("auto", "--sim-task-seconds", "0.02", "--json", cwd=tmp_path, env=env)
    assert done.returncode == 0, done.stderr
    (post_id,) = json.loads(done.stdout)["succeeded"]
    assert post_id.startswith("20250601-")
    assert PostStore(tmp_path / "news-out").load(post_id)["status"] == "draft_saved"
    assert not (tmp_path / "data").exists()
    listed = command("posts", cwd=tmp_path, env={"DAILY_NEWS_DATA_DIR": "news-out"})
    assert listed.returncode == 0, listed.stderr
    assert listed.stdout.startswith(f"{post_id}  draft_saved")


def test_the_command_uses_dashscope_when_a_key_and_url_are_set(
    sim: SimServer, tmp_path: Path
) -> None:
    c = candidates(1)
    sim.script({"prompt": c[0].prompt, "steps": ["fake_image", "ok"]})
    done = command(
        "auto",
        "--count",
        "1",
        "--date",
        DATE,
        "--json",
        cwd=tmp_path,
        env={
            "DASHSCOPE_API_KEY": KEY,
            "DASHSCOPE_BASE_URL": sim.dashscope_base_url,
            "ALIYUN_IMAGE_RETRY_SLEEP_S": "0.01",
        },
    )
    assert done.returncode == 0, done.stderr
    assert f"DashScope at {sim.dashscope_base_url}" in done.stderr
    assert "attempt 1 failed (bad_content" in done.stderr
    summary = json.loads(done.stdout)
    assert summary["succeeded"] == [candidates(1, run=summary["run_id"])[0].post_id]
    assert prompt_stats(sim, c[0].prompt) == (2, 2)
    assert KEY not in done.stderr + done.stdout


@pytest.mark.parametrize(
    ("env", "message"),
    [
        ({"IMAGE_PROVIDER": "openai"}, "use IMAGE_PROVIDER=aliyun"),
        ({"IMAGE_PROVIDER": "aliyun"}, "配置错误：API Key 缺失 (api_key missing)"),
        ({"DASHSCOPE_BASE_URL": "http://127.0.0.1:9/api/v1"}, "api_key missing"),
        ({"ALIYUN_IMAGE_MAX_ATTEMPTS": "0"}, "ALIYUN_IMAGE_MAX_ATTEMPTS='0'"),
    ],
)
def test_bad_configuration_is_refused_with_a_clear_message(
    tmp_path: Path, env: dict[str, str], message: str
) -> None:
    done = command("auto", "--count", "1", cwd=tmp_path, env=env)
    assert done.returncode == 1
    assert message in done.stderr
    assert not (tmp_path / "data" / "posts").exists()
