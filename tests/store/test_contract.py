"""The store contract: what every backend does, checked through the public ``Store`` API.

Each test runs on every backend in ``conftest.BACKENDS``; ``other`` is the same database
opened again, as another process would.
"""

from __future__ import annotations

import asyncio
import json
import sys
from collections.abc import Callable

import pytest

from regen.store import (
    AddEvent,
    AddItems,
    Artifact,
    ClaimedItems,
    Count,
    CountAttempt,
    EndItem,
    EndRun,
    EndStep,
    EventType,
    HealthCheck,
    InvalidTransition,
    ItemLease,
    ItemStatus,
    Lease,
    LinkArtifact,
    NewRun,
    OpenItems,
    PutCache,
    RunNotFound,
    RunStatus,
    StartItem,
    StartStep,
    StepStatus,
    Store,
    StoreError,
)

STEPS = (("fetch", "step"), ("draw", "map"), ("publish", "step"))


def _new(run_id: str, key: str | None = None, *, flow: str = "f", retries: int = 0) -> NewRun:
    return NewRun(run_id, flow, None, key, '{"n":1}', STEPS, retries, 30.0)


async def _held(store: Store, run_id: str = "r1", *, at: float = 1.0, ttl: float = 100.0) -> Lease:
    await store.create_run(_new(run_id), at)
    claimed = await store.claim("me", ttl, at, run_id=run_id)
    assert claimed is not None
    return claimed.lease


def _start(position: int, at: float = 2.0) -> StartStep:
    name, kind = STEPS[position]
    return StartStep(position, at, json.dumps({"step": name, "kind": kind}))


def _end(position: int, status: StepStatus, output: str | None = None, at: float = 3.0) -> EndStep:
    error = None if status is not StepStatus.FAILED else '{"type":"Boom","message":"broke"}'
    return EndStep(position, status, at, output, error, json.dumps({"step": STEPS[position][0]}))


async def _types(store: Store, run_id: str = "r1", after: int = 0) -> list[str]:
    return [e.type for e in await store.read_events(run_id, after)]


# --- runs -----------------------------------------------------------------------------------


async def test_a_new_run_is_queued_with_pending_steps_and_one_event(store: Store) -> None:
    run, created = await store.create_run(_new("r1"), 5.0)
    assert created
    assert (run.id, run.status, run.params, run.created_at) == (
        "r1",
        RunStatus.QUEUED,
        {"n": 1},
        5.0,
    )
    steps = await store.get_steps("r1")
    assert [(s.name, s.kind, s.status) for s in steps] == [
        ("fetch", "step", StepStatus.PENDING),
        ("draw", "map", StepStatus.PENDING),
        ("publish", "step", StepStatus.PENDING),
    ]
    events = await store.read_events("r1")
    assert [(e.seq, e.type, e.data) for e in events] == [(1, "run.queued", {"flow": "f"})]
    assert await store.get_run("nope") is None
    assert await store.get_steps("nope") == []


async def test_one_run_per_business_key_whatever_the_concurrency(
    store: Store, opener: Callable[[], Store]
) -> None:
    others = [opener() for _ in range(4)]
    try:
        outcomes = await asyncio.gather(
            *(s.create_run(_new(f"r{i}", "k"), 1.0) for i, s in enumerate([store, *others] * 4))
        )
    finally:
        for s in others:
            await s.close()
    assert len({run.id for run, _ in outcomes}) == 1
    assert sum(created for _, created in outcomes) == 1
    found = await store.find_run("f", "k")
    assert found is not None
    assert found.id == outcomes[0][0].id
    assert (await store.create_run(_new("r99", "k", flow="g"), 1.0))[1]  # per flow


async def test_text_no_store_can_hold_matches_no_run(store: Store) -> None:
    # PostgreSQL text cannot hold a NUL character: such an id, flow or key finds nothing,
    # as it finds nothing in SQLite, instead of failing the query.
    await store.create_run(_new("r1", "k"), 1.0)
    odd = "r1\x00"
    assert await store.get_run(odd) is None
    assert await store.find_run("f", "k\x00") is None
    assert await store.list_runs(flow="f\x00") == []
    assert await store.get_steps(odd) == []
    assert await store.read_events(odd) == []
    assert await store.get_items(odd, "draw") == []
    assert await store.due_retries(5.0, ["f\x00"]) == []
    for refused in (
        store.request_cancel(odd, 2.0),
        store.delete_run(odd),
        store.retry_run(odd, 2.0),
    ):
        with pytest.raises(RunNotFound):
            await refused
    assert (await store.get_run("r1")) is not None  # nothing else was touched


async def test_runs_are_listed_newest_first_with_filters_and_paging(store: Store) -> None:
    for i in range(5):
        await store.create_run(_new(f"r{i}", flow="f" if i % 2 else "g"), float(i))
    assert [r.id for r in await store.list_runs(limit=2)] == ["r4", "r3"]
    assert [r.id for r in await store.list_runs(before=3.0, limit=2)] == ["r2", "r1"]
    assert [r.id for r in await store.list_runs(flow="f")] == ["r3", "r1"]
    assert await store.list_runs(statuses=[RunStatus.RUNNING]) == []
    await store.claim("me", 10.0, 9.0, run_id="r2")
    assert [r.id for r in await store.list_runs(statuses=[RunStatus.RUNNING])] == ["r2"]


# --- claims and leases ----------------------------------------------------------------------


async def test_claims_take_the_oldest_queued_run_of_the_flows_asked(store: Store) -> None:
    await store.create_run(_new("old", flow="a"), 1.0)
    await store.create_run(_new("new", flow="b"), 2.0)
    claimed = await store.claim("me", 10.0, 3.0, flows=["b"])
    assert claimed is not None
    assert (claimed.run.id, claimed.run.status, claimed.taken_over) == ("new", "running", False)
    assert claimed.run.executions == 1
    assert claimed.lease.owner == "me"
    assert claimed.lease.expires_at == 13.0
    assert (await store.claim("me", 10.0, 3.0, flows=["b"])) is None
    first = await store.claim("me", 10.0, 3.0)
    assert first is not None
    assert first.run.id == "old"
    assert await _types(store, "old") == ["run.queued", "run.started"]


async def test_two_stores_never_claim_the_same_run(store: Store, other: Store) -> None:
    for i in range(30):
        await store.create_run(_new(f"r{i}"), float(i))

    async def claim_all(s: Store) -> list[str]:
        got = []
        while (c := await s.claim("w", 30.0, 100.0)) is not None:
            got.append(c.run.id)
        return got

    mine, theirs = await asyncio.gather(claim_all(store), claim_all(other))
    assert sorted(mine + theirs) == sorted(f"r{i}" for i in range(30))
    assert not set(mine) & set(theirs)


async def test_a_run_whose_lease_expired_is_taken_over_and_the_old_holder_fenced(
    store: Store, other: Store
) -> None:
    first = await _held(store, ttl=10.0)
    assert await other.claim("them", 10.0, 5.0, run_id="r1") is None  # still leased
    second = await other.claim("them", 10.0, 20.0, run_id="r1")  # expired at 11
    assert second is not None
    assert second.taken_over
    assert (second.run.executions, second.run.crashes) == (2, 1)
    stale = await store.commit(first, [AddEvent("log", '{"by":"old"}', 21.0)])
    fresh = await other.commit(second.lease, [AddEvent("log", '{"by":"new"}', 21.0)])
    assert (stale.ok, fresh.ok) == (False, True)
    logs = [e.data for e in await store.read_events("r1") if e.type == "log"]
    assert logs == [{"by": "new"}]  # nothing of the stale holder's was written
    assert (await store.heartbeat([first], 10.0, 22.0))["r1"].ok is False
    assert (await store.heartbeat([second.lease], 10.0, 22.0))["r1"].ok is True
    run = await store.get_run("r1")
    assert run is not None
    assert run.lease_expires_at == 32.0
    seqs = [e.seq for e in await store.read_events("r1")]
    assert seqs == list(range(1, len(seqs) + 1))


async def test_a_released_run_is_queued_again(store: Store) -> None:
    lease = await _held(store)
    assert await store.release(lease, 5.0)
    run = await store.get_run("r1")
    assert run is not None
    assert (run.status, run.lease_owner) == (RunStatus.QUEUED, None)
    assert not await store.release(lease, 6.0)  # released once
    assert (await _types(store))[-1] == "run.queued"


# --- a run's writes -------------------------------------------------------------------------


async def test_a_step_checkpoint_is_written_with_its_event(store: Store) -> None:
    lease = await _held(store)
    result = await store.commit(lease, [_start(0), _end(0, StepStatus.SUCCEEDED, '{"papers":3}')])
    assert (result.ok, result.cancel_requested) == (True, False)
    fetch = (await store.get_steps("r1"))[0]
    assert (fetch.status, fetch.output, fetch.started_at, fetch.finished_at) == (
        StepStatus.SUCCEEDED,
        {"papers": 3},
        2.0,
        3.0,
    )
    assert fetch.checkpointed_at == 3.0
    events = await store.read_events("r1")
    assert [(e.seq, e.type, e.data) for e in events[-2:]] == [
        (3, "step.started", {"step": "fetch", "kind": "step"}),
        (4, "step.succeeded", {"step": "fetch"}),
    ]


async def test_items_and_attempt_counts_are_recorded(store: Store) -> None:
    lease = await _held(store)
    await store.commit(
        lease,
        [
            _start(1),
            StartItem("draw", 0, 2.0, "cat", '"a cat"'),
            StartItem("draw", 1, 2.0, "dog", '"a dog"'),
            EndItem("draw", 0, ItemStatus.SUCCEEDED, 3.0, "cat", None, '"cat.png"', "[]"),
            EndItem("draw", 1, ItemStatus.GIVEN_UP, 3.0, "dog", None, None, "[{}]", '["boom"]'),
            CountAttempt(1, 2),
        ],
    )
    items = await store.get_items("r1", "draw")
    assert [(i.idx, i.key, i.status, i.input, i.output, i.errors) for i in items] == [
        (0, "cat", ItemStatus.SUCCEEDED, "a cat", "cat.png", []),
        (1, "dog", ItemStatus.GIVEN_UP, "a dog", None, ["boom"]),
    ]
    assert await store.item_states("r1", "draw", after=0) == [(1, ItemStatus.GIVEN_UP)]
    assert [i.idx for i in await store.get_items("r1", "draw", status=ItemStatus.GIVEN_UP)] == [1]
    assert await store.count_items("r1", "draw") == {
        ItemStatus.SUCCEEDED: 1,
        ItemStatus.GIVEN_UP: 1,
    }
    assert (await store.get_steps("r1"))[1].attempts == 2


async def test_events_are_numbered_per_run_and_read_page_by_page(store: Store) -> None:
    lease = await _held(store)
    await store.commit(lease, [AddEvent("chunk", json.dumps({"i": i}), 2.0) for i in range(10)])
    events = await store.read_events("r1", after=2, limit=4)
    assert [(e.seq, e.data) for e in events] == [
        (3, {"i": 0}),
        (4, {"i": 1}),
        (5, {"i": 2}),
        (6, {"i": 3}),
    ]
    assert [e.seq for e in await store.read_events("r1", after=10)] == [11, 12]
    assert await store.read_events("unknown") == []


async def test_a_cancel_request_is_reported_to_the_lease_holder(store: Store, other: Store) -> None:
    lease = await _held(store)
    run = await other.request_cancel("r1", 2.0)
    assert (run.status, run.cancel_requested) == (RunStatus.RUNNING, True)
    result = await store.commit(lease, [_start(0)])
    assert (result.ok, result.cancel_requested) == (True, True)
    assert (await store.heartbeat([lease], 10.0, 3.0))["r1"].cancel_requested
    await store.commit(
        lease, [EndRun(RunStatus.CANCELLED, 4.0, '{"type":"Cancelled"}', close_steps=True)]
    )
    steps = await store.get_steps("r1")
    assert [s.status for s in steps] == [StepStatus.FAILED, StepStatus.SKIPPED, StepStatus.SKIPPED]
    assert (await _types(store))[-3:] == ["step.failed", "step.skipped", "step.skipped"]


async def test_listeners_hear_of_commits_to_a_run(store: Store) -> None:
    heard: list[str] = []
    remove = store.add_listener(heard.append)
    lease = await _held(store)
    await store.commit(lease, [AddEvent("log", "{}", 2.0)])
    assert "r1" in heard
    assert set(heard) == {"r1"}
    remove()
    count = len(heard)
    await store.commit(lease, [AddEvent("log", "{}", 3.0)])
    assert len(heard) == count


async def test_queue_listeners_hear_of_runs_created_released_and_retried(store: Store) -> None:
    told: list[str] = []
    remove = store.add_queue_listener(told.append)

    def heard() -> list[str]:
        return [flow for flow in told if flow]  # "": a wake-up for any flow

    await store.create_run(_new("r1", "k"), 1.0)
    assert heard() == ["f"]
    await store.create_run(_new("r2", "k"), 1.0)  # the key is taken: nothing is queued
    claimed = await store.claim("me", 100.0, 1.0, run_id="r1")
    assert claimed is not None
    await store.commit(claimed.lease, [AddEvent("log", "{}", 2.0)])  # not a queue change
    assert heard() == ["f"]
    assert await store.release(claimed.lease, 2.0)
    assert heard() == ["f", "f"]
    again = await store.claim("me", 100.0, 3.0, run_id="r1")
    assert again is not None
    await store.commit(again.lease, [EndRun(RunStatus.FAILED, 4.0, '{"type":"X"}')])
    await store.retry_run("r1", 5.0)
    assert heard() == ["f", "f", "f"]
    remove()
    await store.create_run(_new("r3"), 7.0)
    assert heard() == ["f", "f", "f"]


async def test_queue_listeners_hear_of_a_map_steps_items_opened(store: Store) -> None:
    lease = await _held(store)
    told: list[str] = []
    remove = store.add_queue_listener(told.append)
    await store.commit(lease, [_start(1), AddItems("draw", ((0, None, '"a"'),))])
    before = len(told)
    await store.commit(lease, [OpenItems(1, None, 1)])
    assert len(told) > before  # idle workers wake to help run them
    remove()


# --- retries and cancellation ---------------------------------------------------------------


async def _failed_at_draw(store: Store) -> Lease:
    lease = await _held(store)
    await store.commit(
        lease,
        [
            _start(0),
            _end(0, StepStatus.SUCCEEDED, '"papers"'),
            _start(1),
            EndItem("draw", 0, ItemStatus.SUCCEEDED, 3.0, None, '"a"', '"a.png"'),
            EndItem("draw", 1, ItemStatus.GIVEN_UP, 3.0, None, '"b"', None, "[]", '["x"]'),
            _end(1, StepStatus.PARTIAL, '{"succeeded":1}'),
            EndRun(RunStatus.PARTIAL, 4.0, None),
        ],
    )
    return lease


async def test_a_retry_resumes_from_the_failed_step_keeping_what_succeeded(store: Store) -> None:
    await _failed_at_draw(store)
    run = await store.retry_run("r1", 5.0)
    assert (run.status, run.retry_count, run.auto_retries) == (RunStatus.QUEUED, 1, 0)
    steps = await store.get_steps("r1")
    assert [(s.status, s.output) for s in steps] == [
        (StepStatus.SUCCEEDED, "papers"),
        (StepStatus.PENDING, None),
        (StepStatus.PENDING, None),
    ]
    states = await store.item_states("r1", "draw")
    assert states == [(0, ItemStatus.SUCCEEDED), (1, ItemStatus.PENDING)]
    last = (await store.read_events("r1"))[-1]
    assert (last.type, last.data["from_step"], last.data["auto"]) == ("run.queued", "draw", False)
    with pytest.raises(InvalidTransition, match="already queued"):
        await store.retry_run("r1", 6.0)


async def test_a_retry_from_a_named_step_invalidates_it_and_every_later_one(store: Store) -> None:
    await _failed_at_draw(store)
    with pytest.raises(InvalidTransition, match="no step named 'nope'"):
        await store.retry_run("r1", 5.0, from_step="nope")
    await store.retry_run("r1", 5.0, from_step="fetch")
    steps = await store.get_steps("r1")
    assert [s.status for s in steps] == [StepStatus.PENDING] * 3
    assert all(s.output is None and s.refresh for s in steps)
    assert steps[0].generation == 1  # its idempotency keys change: it runs anew
    assert await store.get_items("r1", "draw") == []


async def test_retries_are_refused_where_they_would_run_a_run_twice(
    store: Store, other: Store
) -> None:
    await _held(store, ttl=10.0)
    with pytest.raises(InvalidTransition, match="is running"):
        await store.retry_run("r1", 5.0)
    # Its process died (the lease expired): a retry may go ahead at once.
    run = await other.retry_run("r1", 50.0)
    assert run.status is RunStatus.QUEUED
    with pytest.raises(RunNotFound):
        await store.retry_run("nope", 5.0)


async def test_automatic_retries_are_scheduled_counted_and_carried_out_once(store: Store) -> None:
    await store.create_run(_new("r1", retries=2), 1.0)
    claimed = await store.claim("me", 10.0, 1.0)
    assert claimed is not None
    await store.commit(
        claimed.lease, [EndRun(RunStatus.FAILED, 2.0, '{"type":"X"}', retry_at=32.0)]
    )
    assert await store.next_retry_at() == 32.0
    assert await store.due_retries(10.0) == []
    assert await store.due_retries(40.0) == ["r1"]
    with pytest.raises(InvalidTransition, match="no automatic retry is due"):
        await store.retry_run("r1", 10.0, auto=True)
    run = await store.retry_run("r1", 40.0, auto=True)
    assert (run.retry_count, run.auto_retries) == (1, 1)
    with pytest.raises(InvalidTransition):
        await store.retry_run("r1", 41.0, auto=True)  # carried out once
    assert await store.next_retry_at() is None


async def test_cancel_ends_a_queued_run_at_once_and_refuses_a_finished_one(store: Store) -> None:
    await store.create_run(_new("r1"), 1.0)
    run = await store.request_cancel("r1", 2.0)
    assert run.status is RunStatus.CANCELLED
    assert [s.status for s in await store.get_steps("r1")] == [StepStatus.SKIPPED] * 3
    assert (await _types(store))[-1] == "run.cancelled"
    with pytest.raises(InvalidTransition, match="already finished"):
        await store.request_cancel("r1", 3.0)
    with pytest.raises(InvalidTransition, match="cancelled"):
        await store.retry_run("r1", 3.0)


async def test_a_run_whose_process_died_can_be_cancelled_at_once(store: Store) -> None:
    await _held(store, ttl=10.0)
    run = await store.request_cancel("r1", 50.0)
    assert run.status is RunStatus.CANCELLED


# --- cache, artifacts, retention ------------------------------------------------------------


async def test_cached_results_are_found_until_they_expire(store: Store) -> None:
    lease = await _held(store)
    await store.commit(
        lease,
        [PutCache("k1", "f.draw", '"x"', 2.0, 10.0), PutCache("k2", "f.draw", '"y"', 2.0)],
    )
    assert await store.cache_get("k1", 5.0) == '"x"'
    assert await store.cache_get("k1", 11.0) is None
    assert await store.cache_get("k2", 1e12) == '"y"'
    assert await store.cache_get("k3", 5.0) is None


async def test_artifacts_are_recorded_with_their_bytes_placed_in_the_same_transaction(
    store: Store,
) -> None:
    placed: list[str] = []
    meta = Artifact("a" * 64, 3, "image/png", 1, 2)
    await store.put_artifact(meta, lambda: placed.append("a" * 64), 5.0)
    assert placed == ["a" * 64]
    got = await store.get_artifact("a" * 64)
    assert got is not None
    assert (got.size, got.content_type, got.width, got.height) == (3, "image/png", 1, 2)
    assert await store.get_artifact("b" * 64) is None


async def test_retention_expires_checkpoints_then_runs_and_unused_artifacts(store: Store) -> None:
    await _failed_at_draw(store)
    await store.put_artifact(Artifact("a" * 64, 1, "image/png"), lambda: None, 1.0)
    await store.put_artifact(Artifact("b" * 64, 1, "image/png"), lambda: None, 1.0)
    removed: list[str] = []

    async def collect(now: float) -> tuple[int, int, int]:
        counts = await store.collect(
            checkpoints_before=now - 100,
            runs_before=now - 1000,
            artifacts_before=now - 1000,
            now=now,
            remove_file=removed.append,
        )
        return counts.checkpoints_expired, counts.runs_deleted, counts.artifacts_deleted

    assert await collect(50.0) == (0, 0, 0)
    assert await collect(200.0) == (1, 0, 0)
    run = await store.get_run("r1")
    assert run is not None
    assert run.checkpoints_expired
    assert all(s.output is None for s in await store.get_steps("r1"))
    assert await store.get_items("r1", "draw") == []
    with pytest.raises(InvalidTransition, match="checkpoints were deleted"):
        await store.retry_run("r1", 201.0)
    assert await collect(2000.0) == (0, 1, 2)
    assert await store.get_run("r1") is None
    assert await store.read_events("r1") == []
    assert sorted(removed) == ["a" * 64, "b" * 64]


async def test_an_artifact_a_run_uses_is_kept_while_the_run_exists(store: Store) -> None:
    lease = await _held(store)
    await store.put_artifact(Artifact("a" * 64, 1, "image/png"), lambda: None, 1.0)
    await store.commit(lease, [LinkArtifact("a" * 64, "draw", 0)])
    removed: list[str] = []
    counts = await store.collect(
        checkpoints_before=0,
        runs_before=0,
        artifacts_before=1e12,
        now=1e12,
        remove_file=removed.append,
    )
    assert (counts.artifacts_deleted, removed) == (0, [])


async def test_a_running_run_is_never_cleaned_up(store: Store) -> None:
    await _held(store, ttl=1e9)
    counts = await store.collect(
        checkpoints_before=1e12,
        runs_before=1e12,
        artifacts_before=1e12,
        now=1e12,
        remove_file=lambda _: None,
    )
    assert (counts.checkpoints_expired, counts.runs_deleted) == (0, 0)
    assert await store.get_run("r1") is not None


async def test_the_event_types_are_the_wire_strings() -> None:
    assert EventType.CHUNK == "chunk"
    assert EventType.run_ended("partial") is EventType.RUN_PARTIAL
    assert json.dumps({"type": EventType.STEP_SKIPPED}) == '{"type": "step.skipped"}'


async def test_health_checks_are_kept_per_provider_newest_first_and_pruned(store: Store) -> None:
    for i in range(5):
        await store.add_health_check(HealthCheck("openai", float(i), "healthy", 10.0 + i))
    await store.add_health_check(
        HealthCheck("dashscope", 9.0, "unhealthy", None, "rate limited", 12.5)
    )
    history = await store.health_history("openai", limit=3)
    assert [(c.at, c.latency_ms) for c in history] == [(4.0, 14.0), (3.0, 13.0), (2.0, 12.0)]
    latest = await store.latest_health()
    assert [(c.provider, c.status, c.error, c.quota_remaining) for c in latest] == [
        ("dashscope", "unhealthy", "rate limited", 12.5),
        ("openai", "healthy", None, None),
    ]
    counts = await store.collect(
        checkpoints_before=0,
        runs_before=0,
        artifacts_before=0,
        now=0,
        remove_file=lambda _: None,
        health_checks_kept=2,
    )
    assert counts.health_checks_deleted == 3
    assert [c.at for c in await store.health_history("openai")] == [4.0, 3.0]
    assert len(await store.health_history("dashscope")) == 1


async def test_runs_are_found_by_a_prefix_of_their_id(store: Store) -> None:
    for run_id in ("abc1", "abc2", "abd3"):
        await store.create_run(_new(run_id), 1.0)
    assert sorted(r.id for r in await store.list_runs(id_prefix="abc")) == ["abc1", "abc2"]
    assert [r.id for r in await store.list_runs(id_prefix="abd")] == ["abd3"]
    assert await store.list_runs(id_prefix="zz") == []


async def test_events_of_every_run_are_read_in_order_after_a_cursor(store: Store) -> None:
    lease = await _held(store, "r1")
    await store.create_run(_new("r2"), 2.0)
    await store.commit(lease, [AddEvent("log", "{}", 3.0)])
    every = await store.read_all_events()
    assert [(e.run_id, e.type) for e in every] == [
        ("r1", "run.queued"),
        ("r1", "run.started"),
        ("r2", "run.queued"),
        ("r1", "log"),
    ]
    cursors = [e.cursor for e in every]
    assert cursors == sorted(cursors)
    assert len(set(cursors)) == 4
    after = await store.read_all_events(after=cursors[1], prefix="run.")
    assert [(e.run_id, e.type) for e in after] == [("r2", "run.queued")]
    assert [e.cursor for e in await store.read_events("r1")] == [cursors[0], cursors[1], cursors[3]]


async def test_a_closed_store_refuses_work_instead_of_hanging(opener: Callable[[], Store]) -> None:
    closed = opener()
    await closed.close()
    with pytest.raises(StoreError, match="closed"):
        await closed.get_run("r1")


async def test_a_finished_run_is_deleted_with_its_log_and_a_live_one_refused(
    store: Store,
) -> None:
    await _held(store, "r1")
    with pytest.raises(InvalidTransition, match="cancel it first"):
        await store.delete_run("r1")
    await store.create_run(_new("r2"), 1.0)
    await store.request_cancel("r2", 2.0)
    await store.delete_run("r2")
    assert await store.get_run("r2") is None
    assert await store.read_events("r2") == []
    assert await store.get_steps("r2") == []
    assert await store.get_run("r1") is not None
    with pytest.raises(RunNotFound):
        await store.delete_run("r2")


async def test_an_event_number_is_never_handed_out_twice_after_deletions(store: Store) -> None:
    """A follower of every run's events keeps a cursor: when the newest events are
    deleted (a run deleted, a clean-up), the events written next must still come after it."""

    async def newest_cursor() -> int:
        return (await store.read_all_events(limit=10_000))[-1].cursor

    await store.create_run(_new("old"), 1.0)
    await store.create_run(_new("gone"), 2.0)
    seen = await newest_cursor()
    await store.request_cancel("gone", 3.0)
    await store.delete_run("gone")
    await store.create_run(_new("next"), 4.0)
    assert (await store.read_all_events(after=seen))[0].run_id == "next"
    seen = await newest_cursor()

    await store.request_cancel("next", 5.0)
    await store.request_cancel("old", 5.0)
    counts = await store.collect(
        checkpoints_before=0.0,
        runs_before=10.0,
        artifacts_before=0.0,
        now=20.0,
        remove_file=lambda _: None,
    )
    assert counts.runs_deleted == 2
    assert await store.read_all_events() == []
    await store.create_run(_new("after"), 30.0)
    assert [e.run_id for e in await store.read_all_events(after=seen)] == ["after"]


# --- state shared by every worker, and counters --------------------------------------------


def _increment(text: str | None) -> tuple[str | None, int]:
    n = 0 if text is None else json.loads(text)["n"]
    return json.dumps({"n": n + 1}), n + 1


async def test_a_state_update_reads_changes_and_returns_what_the_change_says(store: Store) -> None:
    assert await store.update_state("breaker:sim", _increment) == 1
    assert await store.update_state("breaker:sim", _increment) == 2
    assert await store.read_state("breaker:") == {"breaker:sim": '{"n": 2}'}


async def test_a_change_returning_none_deletes_the_key(store: Store) -> None:
    await store.update_state("limit:sim", _increment)
    seen = await store.update_state("limit:sim", lambda text: (None, text))
    assert seen == '{"n": 1}'
    assert await store.read_state("limit:") == {}
    assert await store.update_state("limit:sim", lambda text: (None, text)) is None


async def test_a_failing_change_writes_nothing(store: Store) -> None:
    await store.update_state("k", _increment)

    def broken(text: str | None) -> tuple[str | None, None]:
        raise ValueError("bad value")

    with pytest.raises(ValueError, match="bad value"):
        await store.update_state("k", broken)
    assert await store.read_state("k") == {"k": '{"n": 1}'}


async def test_state_is_read_by_prefix_and_seen_by_another_process(
    store: Store, other: Store
) -> None:
    for key in ("breaker:openai", "breaker:openai:gpt-4o", "breaker_x", "limit:openai"):
        await store.update_state(key, _increment)
    assert sorted(await other.read_state("breaker:")) == ["breaker:openai", "breaker:openai:gpt-4o"]
    assert len(await other.read_state("")) == 4
    assert await other.read_state("%") == {}


async def test_concurrent_updates_from_two_stores_lose_none(store: Store, other: Store) -> None:
    results = await asyncio.gather(
        *(s.update_state("breaker:sim", _increment) for _ in range(40) for s in (store, other))
    )
    assert sorted(results) == list(range(1, 81))
    assert await store.read_state("breaker:sim") == {"breaker:sim": '{"n": 80}'}


_INCREMENTER = """
import asyncio, json, sys
from regen.store import Count, open_store

def increment(text):
    n = 0 if text is None else json.loads(text)["n"]
    return json.dumps({"n": n + 1}), n + 1

async def main():
    store = open_store(sys.argv[1])
    try:
        print("ready", flush=True)
        sys.stdin.readline()
        for _ in range(int(sys.argv[2])):
            await store.update_state("breaker:sim", increment)
        await store.add_counts([Count(0.0, "sim", "", "attempts", 1)])
    finally:
        await store.close()

asyncio.run(main())
"""


async def test_updates_from_two_processes_at_once_lose_none(store: Store) -> None:
    processes = [
        await asyncio.create_subprocess_exec(
            sys.executable,
            "-c",
            _INCREMENTER,
            store.location,
            "50",
            stdin=asyncio.subprocess.PIPE,
            stdout=asyncio.subprocess.PIPE,
        )
        for _ in range(2)
    ]
    for process in processes:
        assert process.stdout is not None
        assert (await asyncio.wait_for(process.stdout.readline(), 30)).strip() == b"ready"
    await asyncio.wait_for(asyncio.gather(*(p.communicate(b"go\n") for p in processes)), 60)
    assert [p.returncode for p in processes] == [0, 0]
    assert await store.read_state("breaker:sim") == {"breaker:sim": '{"n": 100}'}
    assert await store.read_counts() == {("sim", "", "attempts"): 2}


async def test_counts_add_up_per_counter_and_since_leaves_older_buckets_out(
    store: Store, other: Store
) -> None:
    await store.add_counts(
        [
            Count(60.0, "openai", "timeout", "retries", 2),
            Count(60.0, "openai", "", "attempts", 5),
            Count(120.0, "openai", "", "attempts", 3),
        ]
    )
    await other.add_counts(
        [Count(120.0, "openai", "", "attempts", 4), Count(180.0, "sim", "", "give_ups", 1)]
    )
    await store.add_counts([])
    assert await store.read_counts() == {
        ("openai", "timeout", "retries"): 2,
        ("openai", "", "attempts"): 12,
        ("sim", "", "give_ups"): 1,
    }
    assert await other.read_counts(since=120.0) == {
        ("openai", "", "attempts"): 7,
        ("sim", "", "give_ups"): 1,
    }
    assert await store.read_counts(since=181.0) == {}


async def test_counts_concurrent_from_two_stores_all_land(store: Store, other: Store) -> None:
    rows = [Count(60.0, "p", "", "attempts", 1), Count(60.0, "q", "", "attempts", 1)]
    await asyncio.gather(
        *(s.add_counts(rows if i % 2 else rows[::-1]) for i in range(20) for s in (store, other))
    )
    assert await store.read_counts() == {("p", "", "attempts"): 40, ("q", "", "attempts"): 40}


async def test_the_clean_up_drops_count_buckets_past_their_retention(store: Store) -> None:
    await store.add_counts([Count(b, "sim", "", "attempts", 1) for b in (0.0, 60.0, 120.0)])
    kept = await store.collect(
        checkpoints_before=0, runs_before=0, artifacts_before=0, now=200, remove_file=print
    )
    assert kept.counts_deleted == 0
    assert await store.read_counts() == {("sim", "", "attempts"): 3}
    counts = await store.collect(
        checkpoints_before=0,
        runs_before=0,
        artifacts_before=0,
        now=200,
        remove_file=print,
        counts_before=100.0,
    )
    assert counts.counts_deleted == 2
    assert await store.read_counts() == {("sim", "", "attempts"): 1}


# --- map-step items spread across workers -------------------------------------------------------


async def _open_map(store: Store, n: int, *, quota: int | None = None, run_id: str = "r1") -> Lease:
    """A run held by "me" whose map step (``draw``) has ``n`` items recorded and open."""
    lease = await _held(store, run_id)
    rows = tuple((i, f"k{i}", json.dumps(f"item {i}")) for i in range(n))
    await store.commit(lease, [_start(1), AddItems("draw", rows), OpenItems(1, quota, n)])
    return lease


def _idxs(claimed: ClaimedItems | None) -> list[int] | None:
    return None if claimed is None else [i.idx for i in claimed.items]


def _done(idx: int, token: str, status: ItemStatus = ItemStatus.SUCCEEDED) -> EndItem:
    event = json.dumps({"step": "draw", "item": idx})
    output = '"ok"' if status is ItemStatus.SUCCEEDED else None
    return EndItem("draw", idx, status, 5.0, None, None, output, "[]", None, False, token, event)


async def test_a_map_steps_items_are_claimed_in_order_once_open_and_never_twice(
    store: Store, other: Store
) -> None:
    lease = await _held(store)
    rows = tuple((i, None, json.dumps(i)) for i in range(5))
    await store.commit(lease, [_start(1), AddItems("draw", rows)])
    assert await other.claim_items("them", "t1", 30.0, 2.0, limit=10) is None  # not open yet
    await store.commit(lease, [OpenItems(1, None, 5)])
    mine = await store.claim_items("me", "t0", 30.0, 2.0, limit=2, run_id="r1", step="draw")
    # Another worker finds the step by itself; the run's own holder is not sent to help it.
    theirs = await other.claim_items("them", "t1", 30.0, 2.0, limit=10)
    assert await store.claim_items("me", "t2", 30.0, 2.0, limit=10) is None
    assert _idxs(mine) == [0, 1]
    assert theirs is not None
    assert [(i.idx, i.input, i.worker) for i in theirs.items] == [
        (2, 2, "them"),
        (3, 3, "them"),
        (4, 4, "them"),
    ]
    assert (theirs.run.id, theirs.step.name, theirs.lease.step) == ("r1", "draw", "draw")
    assert (await store.get_items("r1", "draw"))[0].worker == "me"
    assert await other.claim_items("them", "t3", 30.0, 2.0, limit=10) is None  # none left


async def test_a_claim_never_leases_more_items_than_the_quota_can_still_use(store: Store) -> None:
    await _open_map(store, 10, quota=3)
    first = await store.claim_items("a", "ta", 30.0, 2.0, limit=10, run_id="r1", step="draw")
    assert _idxs(first) == [0, 1, 2]
    assert await store.claim_items("b", "tb", 30.0, 2.0, limit=10) is None  # 3 in flight
    await store.commit_items(first.lease, [_done(0, "ta"), _done(1, "ta", ItemStatus.GIVEN_UP)])
    second = await store.claim_items("b", "tb", 30.0, 2.0, limit=10)
    assert _idxs(second) == [3]  # 1 succeeded, 1 running


async def test_a_success_beyond_the_quota_is_recorded_as_skipped(
    store: Store, other: Store
) -> None:
    await _open_map(store, 4, quota=1)
    first = await store.claim_items("a", "ta", 1.0, 2.0, limit=4, run_id="r1", step="draw")
    assert _idxs(first) == [0]
    # Its worker stalls past its lease; another takes the item over, and a spare one too.
    second = await other.claim_items("b", "tb", 30.0, 5.0, limit=4)
    assert _idxs(second) == [0]
    await other.commit_items(second.lease, [_done(0, "tb")])
    assert (await other.commit_items(first.lease, [_done(0, "ta")])).ok is False  # fenced
    items = await store.get_items("r1", "draw")
    assert [(i.idx, i.status, i.worker) for i in items[:1]] == [(0, ItemStatus.SUCCEEDED, "b")]
    assert await store.count_items("r1", "draw") == {
        ItemStatus.SUCCEEDED: 1,
        ItemStatus.PENDING: 3,
    }
    ends = [e.type for e in await store.read_events("r1") if e.type.startswith("item.")]
    assert ends == ["item.succeeded"]


async def test_an_items_end_under_a_lost_claim_is_refused_and_writes_nothing(store: Store) -> None:
    lease = await _open_map(store, 2, quota=2)
    first = await store.claim_items("a", "ta", 1.0, 2.0, limit=1, run_id="r1", step="draw")
    assert first is not None
    later = await store.claim_items("b", "tb", 30.0, 5.0, limit=2, run_id="r1", step="draw")
    assert _idxs(later) == [0, 1]
    before = len(await store.read_events("r1"))
    # The old claim's end, sent with the run's own lease, is dropped item by item.
    assert (await store.commit(lease, [_done(0, "ta")])).ok
    assert (await store.get_items("r1", "draw"))[0].status is ItemStatus.RUNNING
    assert len(await store.read_events("r1")) == before
    # Two successes fill the quota of 2; a third end of the same item changes nothing.
    await store.commit_items(later.lease, [_done(0, "tb"), _done(1, "tb")])
    assert (await store.commit_items(later.lease, [_done(1, "tb")])).ok is False
    assert await store.count_items("r1", "draw") == {ItemStatus.SUCCEEDED: 2}


async def test_an_items_end_keeps_the_provider_that_served_it(store: Store) -> None:
    lease = await _open_map(store, 3)
    claim = await store.claim_items("a", "ta", 30.0, 2.0, limit=2, run_id="r1", step="draw")
    assert claim is not None
    served = _done(0, "ta")._replace(provider="backup")
    failed = _done(1, "ta", ItemStatus.GIVEN_UP)._replace(provider="backup")  # served nothing
    await store.commit_items(claim.lease, [served, failed])
    unclaimed = EndItem("draw", 2, ItemStatus.SUCCEEDED, 6.0, output='"x"', provider="sim")
    await store.commit(lease, [unclaimed])
    items = await store.get_items("r1", "draw")
    assert [(i.status, i.provider) for i in items] == [
        (ItemStatus.SUCCEEDED, "backup"),
        (ItemStatus.GIVEN_UP, None),
        (ItemStatus.SUCCEEDED, "sim"),
    ]


async def test_items_given_back_are_claimable_at_once_and_only_those_not_ended(
    store: Store, other: Store
) -> None:
    await _open_map(store, 4)
    mine = await store.claim_items("a", "ta", 30.0, 2.0, limit=3, run_id="r1", step="draw")
    assert _idxs(mine) == [0, 1, 2]
    assert mine is not None
    await store.commit_items(mine.lease, [_done(1, "ta")])
    told: list[str] = []
    remove = store.add_queue_listener(told.append)
    stale = ItemLease("r1", "draw", "tz", "a")
    assert await store.release_items(stale) == 0  # another token's items stay claimed
    assert await store.release_items(mine.lease) == 2  # 0 and 2; 1 has ended
    assert await store.release_items(mine.lease) == 0
    remove()
    assert told  # idle workers are woken to claim them
    items = {i.idx: i for i in await store.get_items("r1", "draw")}
    assert [(items[i].status, items[i].worker) for i in (0, 2)] == [(ItemStatus.PENDING, None)] * 2
    assert items[1].status is ItemStatus.SUCCEEDED
    # Long before the lease would have lapsed (at 32), another worker takes them.
    taken = await other.claim_items("b", "tb", 30.0, 3.0, limit=5)
    assert _idxs(taken) == [0, 2, 3]


async def test_heartbeats_extend_the_leases_of_the_items_a_worker_still_runs(
    store: Store, other: Store
) -> None:
    await _open_map(store, 3)
    kept = await store.claim_items("a", "ta", 10.0, 2.0, limit=1, run_id="r1", step="draw")
    dropped = await store.claim_items("a", "tz", 10.0, 2.0, limit=1, run_id="r1", step="draw")
    assert _idxs(kept) == [0]
    assert _idxs(dropped) == [1]
    # Renewed until 21 under "ta"; the claim "tz" (its items dropped) is left to lapse.
    await store.heartbeat([], 10.0, 11.0, items_of="a", item_tokens=["ta"])
    taken = await other.claim_items("b", "tb", 10.0, 15.0, limit=5)
    assert _idxs(taken) == [1, 2]
    again = await other.claim_items("c", "tc", 10.0, 22.0, limit=5)  # a's lease lapsed
    assert _idxs(again) == [0]


async def test_no_item_is_claimed_from_a_run_asked_to_cancel_or_ended(
    store: Store, other: Store
) -> None:
    lease = await _open_map(store, 3)
    held = await store.claim_items("a", "ta", 30.0, 2.0, limit=1, run_id="r1", step="draw")
    assert held is not None
    await other.request_cancel("r1", 3.0)
    assert await other.claim_items("b", "tb", 30.0, 3.0, limit=5) is None
    await store.commit(lease, [EndRun(RunStatus.CANCELLED, 4.0, close_steps=True)])
    assert (await other.commit_items(held.lease, [_done(0, "ta")])).ok is False


async def test_a_retry_reopens_the_items_a_dead_worker_left_running(store: Store) -> None:
    lease = await _open_map(store, 3)
    held = await store.claim_items("a", "ta", 30.0, 2.0, limit=3, run_id="r1", step="draw")
    assert held is not None
    await store.commit_items(held.lease, [_done(0, "ta")])
    await store.commit(lease, [_end(1, StepStatus.FAILED), EndRun(RunStatus.FAILED, 4.0)])
    await store.retry_run("r1", 5.0)
    assert await store.count_items("r1", "draw") == {
        ItemStatus.SUCCEEDED: 1,
        ItemStatus.PENDING: 2,
    }
    again = await _held_again(store)
    await store.commit(again, [_start(1, 6.0), OpenItems(1, None, 3)])
    claimed = await store.claim_items("b", "tb", 30.0, 6.0, limit=5, run_id="r1", step="draw")
    assert _idxs(claimed) == [1, 2]


async def _held_again(store: Store) -> Lease:
    claimed = await store.claim("me", 100.0, 5.0, run_id="r1")
    assert claimed is not None
    return claimed.lease
