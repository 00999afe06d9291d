"""Seed 003's checkpoint half, end to end against the simulator.

Each claim of the seed is checked from the outside: the simulator's request counts say
which steps called the provider again and its ``produced`` counts what was generated (and
billed), the outbox says how often the digest went out, and the task record is the one the
seed's ``data/tasks.json`` shows. Faults are scripted by prompt (exact assertions) or drawn
from a seeded profile (invariants).
"""

from __future__ import annotations

import asyncio
import dataclasses
from collections import Counter
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import pytest
from examples.paper_pipeline import (
    STEPS,
    ClearRefused,
    Config,
    PaperPipeline,
    TaskExpired,
    TaskNotFound,
    flow,
    image_prompt,
    papers_for,
    parse_day,
)

import regen
from regen.engine import Event, FlowError, InvalidTransition, RunStatus
from regen.providers import OpenAIProvider, image_from_bytes
from regen.retry import FakeClock
from regen.sim import SimServer, run_simulator

DAY = "2025-12-29"
TASK = "task_publish_20251229"
CHAT = regen.Policy(attempts=2, timeout=10.0, wait=0.01)
IMAGES = regen.Policy(attempts=2, timeout=10.0, wait=0.01, phases={"download": 10.0})


@pytest.fixture(scope="module")
def sim_server() -> Iterator[SimServer]:
    with run_simulator(slow_seconds=1.0) as server:
        yield server


@pytest.fixture
def sim(sim_server: SimServer) -> SimServer:
    sim_server.reset()
    return sim_server


@pytest.fixture
def clock() -> Iterator[FakeClock]:
    """regen's test mode: automatic-retry delays and backoff waits are recorded, not slept."""
    with regen.test_mode() as fake:
        assert isinstance(fake, FakeClock)
        yield fake


@pytest.fixture
async def provider(sim: SimServer) -> AsyncIterator[OpenAIProvider]:
    async with OpenAIProvider(sim.openai_base_url, "sk-test-paper", policy=CHAT) as adapter:
        yield adapter


def open_app(home: Path, provider: OpenAIProvider, **config: Any) -> PaperPipeline:
    return PaperPipeline(Config(home=home, **config), provider=provider, image_policy=IMAGES)


def requests(sim: SimServer, route: str) -> int:
    return requests_of(sim.stats(), route)


def requests_of(stats: dict[str, Any], route: str) -> int:
    return int(stats["routes"].get(route, {}).get("requests", 0))


async def step_status(app: PaperPipeline, step: str) -> str | None:
    if await app.engine.find_run(flow, TASK) is None:
        return None
    return next(s["status"] for s in (await app.record(TASK))["steps"] if s["name"] == step)


def day_papers() -> list[dict[str, Any]]:
    """The papers the day's run features, in order."""
    return papers_for(parse_day(DAY), 3)


def first_paper() -> str:
    """The id of the first paper the day's run features (its image is where faults go)."""
    return str(day_papers()[0]["id"])


def billed(sim: SimServer) -> list[tuple[int, int]]:
    """Per paper of the day: (analyses the chat model produced, cover images generated),
    as the simulator counted them: what was actually generated and would be billed."""
    prompts = sim.stats()["prompts"]
    counts = []
    for paper in day_papers():
        chats = [
            entry["produced"]
            for prompt, entry in prompts.items()
            if prompt.startswith(f"Paper {paper['id']}:")
        ]
        assert len(chats) <= 1  # one analysis prompt per paper
        image = prompts.get(image_prompt(paper), {"produced": 0})
        counts.append((sum(chats), int(image["produced"])))
    return counts


def fail_image(sim: SimServer, *steps: str, then: str | None = None) -> None:
    """Script faults for the first paper's image generation requests."""
    rule: dict[str, Any] = {
        "route": "images",
        "prompt_contains": first_paper(),
        "steps": list(steps),
    }
    if then is not None:
        rule["then"] = then
    sim.script(rule)


async def test_a_run_checkpoints_every_step_and_publishes_once(
    tmp_path: Path, sim: SimServer, provider: OpenAIProvider
) -> None:
    with open_app(tmp_path, provider) as app:
        run = await app.run(DAY)
        record = await app.record(TASK)
        assert run.status is RunStatus.SUCCEEDED
        assert record["task_id"] == TASK
        assert record["status"] == "succeeded"
        assert not record["resumable"]
        assert record["last_successful_step"] == "publish_mcp"
        assert record["failed_step"] is None
        assert [s["name"] for s in record["steps"]] == list(STEPS)
        outputs = record["checkpoint"]["step_outputs"]
        assert list(outputs) == list(STEPS)
        assert all(output["timestamp"] for output in outputs.values())
        assert len(outputs["fetch_papers"]["papers"]) == 3
        assert record["checkpoint"]["papers_data"] == outputs["fetch_papers"]["papers"]
        assert len(record["checkpoint"]["analyzed_results"]) == 3
        for image in outputs["render_images"]["images"]:
            path = app.engine.artifacts.path(image["image"])
            assert path.read_bytes().startswith(b"\x89PNG")
        (entry,) = app.outbox.entries()
        assert entry["post_id"] == outputs["publish_mcp"]["post_id"]
        assert entry["idempotency_key"] == f"{run.id}/publish_mcp"
        assert len(entry["post"]["notes"]) == 3
        assert (requests(sim, "chat"), requests(sim, "images")) == (3, 3)


async def test_failure_at_render_images_resumes_without_a_second_analysis(
    tmp_path: Path, sim: SimServer, provider: OpenAIProvider
) -> None:
    fail_image(sim, "content_policy")  # a permanent refusal: the step fails at once
    with open_app(tmp_path, provider, auto_retry_enabled=False) as app:
        run = await app.run(DAY)
        record = await app.record(TASK)
        assert run.status is RunStatus.FAILED
        assert record["status"] == "failed"
        assert record["resumable"] is True
        assert record["last_successful_step"] == "openai_analyze"
        assert record["failed_step"] == "render_images"
        assert record["retry_count"] == 0
        assert record["max_retries"] == 0
        assert set(record["checkpoint"]["step_outputs"]) == {"fetch_papers", "openai_analyze"}
        assert len(record["checkpoint"]["analyzed_results"]) == 3
        (render,) = [s for s in record["steps"] if s["name"] == "render_images"]
        assert render["status"] == "failed"
        assert render["error"]["kind"] == "content_policy"
        assert await app.checkpoints.get_resumable_step(TASK) == "render_images"
        assert await app.checkpoints.load_checkpoint(TASK) == record["checkpoint"]
        assert app.outbox.entries() == []
        chats, images = requests(sim, "chat"), requests(sim, "images")
        assert chats == 3
        first = billed(sim)
        assert [analyses for analyses, _ in first] == [1, 1, 1]  # one analysis per paper
        assert first[0][1] == 0  # the refused cover was never generated
        # (the other two covers may have been generated before the refusal stopped the step)

        run = await app.retry(TASK)  # from the failed step

        assert run.status is RunStatus.SUCCEEDED
        assert run.retry_count == 1
        assert requests(sim, "chat") == chats  # the analyses were kept, not redone
        assert requests(sim, "images") == images + 3  # only the retried step called again
        # What was generated: no analysis billed twice, exactly one new cover per paper.
        assert billed(sim) == [(1, covers + 1) for _, covers in first]
        assert len(app.outbox.entries()) == 1
        after = await app.record(TASK)
        kept = ("fetch_papers", "openai_analyze")
        for name in kept:
            assert (
                after["checkpoint"]["step_outputs"][name]
                == record["checkpoint"]["step_outputs"][name]
            )
        assert await app.checkpoints.get_resumable_step(TASK) is None


async def test_retry_from_a_named_step_reruns_it_and_the_later_steps_only(
    tmp_path: Path, sim: SimServer, provider: OpenAIProvider
) -> None:
    fail_image(sim, "content_policy")
    with open_app(tmp_path, provider, auto_retry_enabled=False) as app:
        await app.run(DAY)
        before = (await app.record(TASK))["checkpoint"]["step_outputs"]

        run = await app.retry(TASK, from_step="openai_analyze")

        assert run.status is RunStatus.SUCCEEDED
        after = (await app.record(TASK))["checkpoint"]["step_outputs"]
        assert after["fetch_papers"] == before["fetch_papers"]  # kept: same checkpoint
        assert requests(sim, "chat") == 6  # the named step ran again, for every paper
        assert len(app.outbox.entries()) == 1

        with pytest.raises(FlowError, match="no step 'nope'; its steps: fetch_papers"):
            await app.retry(TASK, from_step="nope")


async def test_retry_from_a_named_step_of_a_succeeded_task_keeps_earlier_calls(
    tmp_path: Path, sim: SimServer, provider: OpenAIProvider
) -> None:
    with open_app(tmp_path, provider) as app:
        await app.run(DAY)
        chats, images = requests(sim, "chat"), requests(sim, "images")

        run = await app.retry(TASK, from_step="build_payload")

        assert run.status is RunStatus.SUCCEEDED
        assert (requests(sim, "chat"), requests(sim, "images")) == (chats, images)
        # Re-running publish_mcp by name is a deliberate new publication: the engine gives
        # the re-run step a new idempotency key (a new generation).
        keys = [entry["idempotency_key"] for entry in app.outbox.entries()]
        assert keys == [f"{run.id}/publish_mcp", f"{run.id}/publish_mcp#1"]
        with pytest.raises(InvalidTransition, match="succeeded: nothing failed"):
            await app.retry(TASK)


async def test_a_resumed_publish_never_publishes_twice(
    tmp_path: Path, sim: SimServer, provider: OpenAIProvider
) -> None:
    # The post goes out, then the step fails before its checkpoint (a lost acknowledgement).
    with open_app(
        tmp_path, provider, auto_retry_enabled=False, fail_step=("publish_mcp", "after")
    ) as app:
        run = await app.run(DAY)
        assert run.status is RunStatus.FAILED
        assert (await app.record(TASK))["failed_step"] == "publish_mcp"
        assert len(app.outbox.entries()) == 1
        app.resources = dataclasses.replace(app.resources, fail_step=None)

        run = await app.retry(TASK)

        assert run.status is RunStatus.SUCCEEDED
        (entry,) = app.outbox.entries()
        published = (await app.record(TASK))["checkpoint"]["step_outputs"]["publish_mcp"]
        assert published["duplicate"] is True
        assert published["post_id"] == entry["post_id"]


async def test_automatic_retry_recovers_a_transient_failure(
    tmp_path: Path, sim: SimServer, provider: OpenAIProvider, clock: FakeClock
) -> None:
    fail_image(sim, "server_error", "server_error")  # both image attempts of one execution
    with open_app(tmp_path, provider) as app:  # the seed's defaults: on, 3 × 30 s
        run = await app.run(DAY)

        assert run.status is RunStatus.SUCCEEDED
        assert run.retry_count == 1
        assert run.executions == 2
        assert 30.0 in clock.sleeps  # AUTO_RETRY_DELAY_SECONDS, waited on regen's clock
        assert requests(sim, "chat") == 3
        assert len(app.outbox.entries()) == 1
        record = await app.record(TASK)
        assert (record["retry_count"], record["max_retries"]) == (1, 3)


async def test_a_manual_retry_leaves_the_automatic_retries_their_budget(
    tmp_path: Path, sim: SimServer, provider: OpenAIProvider, clock: FakeClock
) -> None:
    config = {"auto_retry_max_attempts": 2, "auto_retry_delay_seconds": 30.0}
    with open_app(tmp_path, provider, fail_step=("render_images", "before"), **config) as app:
        # The first execution fails and leaves its automatic retry pending (as when the
        # process that ran it stopped); then a retry is asked for by hand.
        started = await app.engine.start(
            flow, {"day": DAY, "count": 3, "feed": ""}, key=TASK, max_retries=2, retry_delay=30
        )
        first = await app.engine.execute(
            started.run.id, follow_retries=False, resources=app.resources
        )
        assert first.status is RunStatus.FAILED
        assert first.retry_at is not None
        run = await app.retry(TASK)
        record = await app.record(TASK)
    assert run.status is RunStatus.FAILED
    # The manual retry, then both automatic retries: the manual one used none of them.
    assert run.executions == 1 + 1 + 2
    assert (record["retry_count"], record["max_retries"], record["manual_retry_count"]) == (
        2,
        2,
        1,
    )
    assert clock.sleeps.count(30.0) == 2
    assert record["resumable"] is True
    assert record["failed_step"] == "render_images"


async def test_clear_checkpoint_makes_the_next_run_start_over(
    tmp_path: Path, sim: SimServer, provider: OpenAIProvider
) -> None:
    with open_app(
        tmp_path, provider, auto_retry_enabled=False, fail_step=("render_images", "before")
    ) as app:
        assert (await app.run(DAY)).status is RunStatus.FAILED
        assert await app.checkpoints.get_resumable_step(TASK) == "render_images"
        await app.checkpoints.clear_checkpoint(TASK)
        assert (await app.checkpoints.load_checkpoint(TASK))["step_outputs"] == {}
    assert requests(sim, "chat") == 3
    with open_app(tmp_path, provider, auto_retry_enabled=False) as app:
        run = await app.run(DAY)
        assert run.status is RunStatus.SUCCEEDED
        assert requests(sim, "chat") == 6  # analysed again: nothing was kept
        with pytest.raises(ClearRefused, match="succeeded"):
            await app.checkpoints.clear_checkpoint(TASK)
        assert len(app.outbox.entries()) == 1


async def test_automatic_retry_gives_up_after_auto_retry_max_attempts(
    tmp_path: Path, sim: SimServer, provider: OpenAIProvider, clock: FakeClock
) -> None:
    fail_image(sim, then="server_error")  # the first paper's image never succeeds
    config = {"auto_retry_max_attempts": 2, "auto_retry_delay_seconds": 5.0}
    with open_app(tmp_path, provider, **config) as app:
        run = await app.run(DAY)

        assert run.status is RunStatus.FAILED
        assert run.executions == 3  # the first execution and two automatic retries
        assert clock.sleeps.count(5.0) == 2
        record = await app.record(TASK)
        assert (record["retry_count"], record["max_retries"]) == (2, 2)
        assert record["next_auto_retry_at"] is None
        assert record["resumable"] is True
        assert record["failed_step"] == "render_images"
        assert requests(sim, "chat") == 3  # analyses kept through every automatic retry
        assert app.outbox.entries() == []


async def test_two_concurrent_starts_for_the_same_day_make_one_run(
    tmp_path: Path, sim: SimServer, provider: OpenAIProvider
) -> None:
    # Two apps on one store, as two processes would be.
    with open_app(tmp_path, provider) as first, open_app(tmp_path, provider) as second:
        runs = await asyncio.gather(first.run(DAY), second.run(DAY))

        assert runs[0].id == runs[1].id
        assert {r.status for r in runs} == {RunStatus.SUCCEEDED}
        assert (await first.engine.get_run(runs[0].id)).executions == 1
        assert requests(sim, "chat") == 3
        assert len(first.outbox.entries()) == 1

        again = await second.run(DAY)  # the day's task is done: nothing runs again
        assert again.id == runs[0].id
        assert requests(sim, "chat") == 3
        assert len(await first.engine.list_runs(flow=flow.name)) == 1


async def test_a_retry_while_the_task_runs_is_refused(
    tmp_path: Path, sim: SimServer, provider: OpenAIProvider
) -> None:
    fail_image(sim, "slow")  # keeps render_images busy for a second
    with open_app(tmp_path, provider) as first, open_app(tmp_path, provider) as second:
        rendering = asyncio.Event()

        def progress(event: Event) -> None:
            if event.type == "step.started" and event.data["step"] == "render_images":
                rendering.set()

        running = asyncio.create_task(first.run(DAY, progress=progress))
        await asyncio.wait_for(rendering.wait(), 10)
        assert await step_status(second, "render_images") == "running"
        with pytest.raises(InvalidTransition, match="is running"):
            await second.retry(TASK)
        run = await running
        assert run.status is RunStatus.SUCCEEDED
        assert run.executions == 1


async def test_checkpoints_expire_after_the_retention_and_the_task_is_no_longer_resumable(
    tmp_path: Path, sim: SimServer, provider: OpenAIProvider, clock: FakeClock
) -> None:
    fail_image(sim, "content_policy")
    with open_app(tmp_path, provider, auto_retry_enabled=False) as app:
        await app.run(DAY)
        clock.advance(23 * 3600)
        assert (await app.gc()).checkpoints_expired == 0
        assert (await app.record(TASK))["resumable"] is True

        clock.advance(2 * 3600)  # past CHECKPOINT_RETENTION_HOURS=24
        assert (await app.gc()).checkpoints_expired == 1

        record = await app.record(TASK)
        assert record["resumable"] is False
        assert record["checkpoints_expired"] is True
        assert record["checkpoint"]["step_outputs"] == {}
        assert await app.checkpoints.get_resumable_step(TASK) is None
        with pytest.raises(InvalidTransition, match="retention"):
            await app.retry(TASK)
        with pytest.raises(
            TaskExpired, match=f"removed by the CHECKPOINT_RETENTION_HOURS.*clear {TASK}"
        ):
            await app.run(DAY)

        # Not a dead end: `clear` forgets the task, and the day runs again from the top.
        assert await app.checkpoints.clear_checkpoint(TASK) is True
        sim.script(replace=True)
        rerun = await app.run(DAY)
        assert rerun.status is RunStatus.SUCCEEDED
        assert rerun.business_key == TASK
        assert (await app.record(TASK))["steps"][0]["status"] == "succeeded"


async def test_the_retention_follows_checkpoint_retention_hours(
    tmp_path: Path, sim: SimServer, provider: OpenAIProvider, clock: FakeClock
) -> None:
    fail_image(sim, "content_policy")
    with open_app(
        tmp_path, provider, auto_retry_enabled=False, checkpoint_retention_hours=1.0
    ) as app:
        await app.run(DAY)
        clock.advance(2 * 3600)
        assert (await app.gc()).checkpoints_expired == 1
        assert (await app.record(TASK))["resumable"] is False


async def test_configured_automatic_retries_are_recorded_on_the_run(
    tmp_path: Path, sim: SimServer, provider: OpenAIProvider
) -> None:
    with open_app(
        tmp_path, provider, auto_retry_max_attempts=5, auto_retry_delay_seconds=12.0
    ) as app:
        run = await app.run(DAY)
        assert (run.max_retries, run.retry_delay) == (5, 12.0)


async def test_unknown_tasks_are_refused_with_the_recent_ones(
    tmp_path: Path, sim: SimServer, provider: OpenAIProvider
) -> None:
    with open_app(tmp_path, provider) as app:
        await app.run(DAY)
        assert (
            (await app.find("20251229")).id == (await app.find(TASK)).id == (await app.find(DAY)).id
        )
        with pytest.raises(TaskNotFound, match=f"recent tasks: {TASK}"):
            await app.record("task_publish_20000101")


# --- a seeded random fault profile: invariants ------------------------------------------------

#: Weather on every call the pipeline makes: chat and image requests refused, cut or
#: malformed, content-policy refusals (not retried: the step fails at once and the run's
#: automatic retry takes over), and downloads that are not images.
PROFILE = {
    "server_error": 0.08,
    "rate_limit": 0.04,
    "reset": 0.04,
    "html_200": 0.03,
    "empty_choices": 0.03,
    "missing_fields": 0.03,
    "content_policy": 0.03,
    "fake_image": 0.08,
    "truncated_image": 0.05,
    "url_expired": 0.03,
}


# Seed 3 fails openai_analyze once (it runs again), 5 needs all three automatic retries
# at render_images, 7 still fails after them: the invariants hold either way.
@pytest.mark.parametrize("seed", [3, 5, 7])
async def test_a_seeded_fault_profile_keeps_the_invariants(
    tmp_path: Path, clock: FakeClock, seed: int
) -> None:
    with run_simulator(faults=PROFILE, seed=seed) as flaky:
        async with OpenAIProvider(flaky.openai_base_url, "sk-test-paper", policy=CHAT) as adapter:
            with open_app(tmp_path, adapter) as app:  # the seed's defaults: 3 × 30 s
                run = await app.run(DAY)
                record = await app.record(TASK)
                events = await app.engine.read_events(run.id, limit=10_000)
                posts = app.outbox.entries()
                covers = [
                    app.engine.artifacts.read(image["image"])
                    for image in record["checkpoint"]["step_outputs"]
                    .get("render_images", {})
                    .get("images", [])
                ]
        stats = flaky.stats()
        counts = billed(flaky)
    assert sum(stats["faults"].values()) > 0  # the profile did inject faults

    # the run's end agrees with its record, its retries and the outbox
    assert run.status in (RunStatus.SUCCEEDED, RunStatus.FAILED)
    assert record["status"] == str(run.status)
    assert run.executions == run.retry_count + 1 <= 3 + 1  # AUTO_RETRY_MAX_ATTEMPTS
    assert clock.sleeps.count(30.0) == run.retry_count  # AUTO_RETRY_DELAY_SECONDS each
    steps = Counter((e.type, e.data.get("step")) for e in events if e.type.startswith("step."))
    runs = Counter(e.type for e in events if e.type.startswith("run."))
    assert runs["run.started"] == run.executions
    assert runs["run.failed"] == run.executions - (run.status is RunStatus.SUCCEEDED)
    # A checkpointed step never runs again: each succeeds at most once, and an automatic
    # retry starts from the failed step.
    for name in STEPS:
        started, failed = steps["step.started", name], steps["step.failed", name]
        done = steps["step.succeeded", name]
        assert done <= 1
        assert started == failed + done
    assert steps["step.started", "fetch_papers"] == 1
    if run.status is RunStatus.SUCCEEDED:
        assert [steps["step.succeeded", name] for name in STEPS] == [1] * 5
        assert record["failed_step"] is None
        (post,) = posts  # published exactly once
        assert post["post_id"] == record["checkpoint"]["step_outputs"]["publish_mcp"]["post_id"]
        assert len(post["post"]["notes"]) == 3
        assert len(covers) == 3
        for data in covers:
            image = image_from_bytes(data)
            assert (image.info.width, image.info.height) == (1024, 1024)
    else:
        assert (record["retry_count"], record["max_retries"]) == (3, 3)
        assert record["next_auto_retry_at"] is None
        assert record["resumable"] is True
        assert record["failed_step"] in ("openai_analyze", "render_images")
        kept = set(record["checkpoint"]["step_outputs"])
        assert kept == set(STEPS[: STEPS.index(record["failed_step"])])
        assert posts == []  # nothing published

    # what the simulator generated (and billed)
    analyses = steps["step.started", "openai_analyze"]
    renders = steps["step.started", "render_images"]
    for analysed, generated in counts:
        # an analysis per execution of openai_analyze at most, none once it is checkpointed
        assert analysed <= analyses
        if steps["step.succeeded", "openai_analyze"]:
            assert analysed >= 1
        if analyses == 1:
            assert analysed == 1
        assert generated <= renders * IMAGES.attempts
        if run.status is RunStatus.SUCCEEDED:
            assert generated >= 1
    assert requests_of(stats, "chat") <= analyses * 3 * CHAT.attempts
    assert requests_of(stats, "images") <= renders * 3 * IMAGES.attempts
