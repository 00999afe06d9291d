"""The seam between the engine and a database: :class:`Store`.

Every method that touches the database is a coroutine, and may be awaited from any event
loop: an implementation does its I/O off the loop (SQLite: threads of its own), so a
locked database delays only the calls that wait on it. Methods that change a running run
take its :class:`Lease`; the store checks the lease token inside the same transaction as
the change, so a process that lost its lease can no longer write. Every implementation
passes the same contract suite (``tests/store/``).
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable, Sequence
from typing import TypeVar

from regen.store._records import (
    Artifact,
    Claimed,
    ClaimedItems,
    Commit,
    Count,
    Event,
    GcCounts,
    HealthCheck,
    Item,
    ItemLease,
    ItemStatus,
    Lease,
    NewRun,
    Run,
    RunStatus,
    Step,
    Write,
)

Listener = Callable[[str], None]
T = TypeVar("T")
#: Hears that a run of a flow (its name, the argument) was queued; ``""``: runs of any flow
#: may have been queued unheard (the store began to listen again).
QueueListener = Callable[[str], None]


class Store(ABC):
    """Runs, their steps, items, events, artifacts and cached results, in one database."""

    location: str

    # --- lifecycle ----------------------------------------------------------------------

    @abstractmethod
    async def close(self) -> None:
        """Release the database connection(s). The store cannot be used afterwards."""

    @abstractmethod
    async def check(self) -> list[str]:
        """Check the database's integrity; the problems found (none: an empty list)."""

    # --- runs ----------------------------------------------------------------------------

    @abstractmethod
    async def create_run(self, new: NewRun, now: float) -> tuple[Run, bool]:
        """Create a queued run with its pending steps and a ``run.queued`` event.

        With a business key already used by a run of the same flow, nothing is created
        and that run is returned: ``(run, created)``.
        """

    @abstractmethod
    async def get_run(self, run_id: str) -> Run | None:
        """The run, or ``None``."""

    @abstractmethod
    async def find_run(self, flow: str, business_key: str) -> Run | None:
        """The run of ``flow`` started with ``business_key``, or ``None``."""

    @abstractmethod
    async def list_runs(
        self,
        *,
        statuses: Sequence[RunStatus] | None = None,
        flow: str | None = None,
        before: float | None = None,
        limit: int = 50,
        id_prefix: str | None = None,
    ) -> list[Run]:
        """Runs, newest first (``before``: created before that time, for paging;
        ``id_prefix``: only runs whose id starts so)."""

    @abstractmethod
    async def get_steps(self, run_id: str) -> list[Step]:
        """The run's steps in order."""

    @abstractmethod
    async def get_items(
        self,
        run_id: str,
        step: str,
        *,
        after: int = -1,
        limit: int = 1000,
        status: ItemStatus | None = None,
    ) -> list[Item]:
        """Items of a map step with ``idx > after``, in order."""

    @abstractmethod
    async def item_states(
        self, run_id: str, step: str, *, after: int = -1, limit: int = 1000
    ) -> list[tuple[int, ItemStatus]]:
        """``(idx, status)`` of items with ``idx > after``, in order (cheap: no payloads)."""

    @abstractmethod
    async def count_items(self, run_id: str, step: str) -> dict[ItemStatus, int]:
        """How many items of a map step are in each status."""

    # --- leases and writes ---------------------------------------------------------------

    @abstractmethod
    async def claim(
        self,
        owner: str,
        ttl: float,
        now: float,
        *,
        run_id: str | None = None,
        flows: Sequence[str] | None = None,
    ) -> Claimed | None:
        """Take a queued run, or a running one whose lease expired, and lease it.

        ``run_id`` claims that run only; ``flows`` limits the choice to those flow names.
        The oldest candidate goes first; two processes never claim the same run.
        """

    @abstractmethod
    async def heartbeat(
        self,
        leases: Sequence[Lease],
        ttl: float,
        now: float,
        *,
        items_of: str | None = None,
        item_tokens: Sequence[str] = (),
    ) -> dict[str, Commit]:
        """Extend leases by ``ttl``; per run: whether the lease still held, cancel asked.
        ``items_of``/``item_tokens``: also extend the leases of the items that owner runs
        under those claim tokens."""

    @abstractmethod
    async def commit(self, lease: Lease, writes: Sequence[Write]) -> Commit:
        """Apply ``writes`` in order, in one transaction, if ``lease`` still holds.

        ``Commit(ok=False)``, with nothing written, when the lease was lost. A database
        busy with another process's transaction is waited for, not an error.
        """

    @abstractmethod
    async def claim_items(
        self,
        owner: str,
        token: str,
        ttl: float,
        now: float,
        *,
        limit: int,
        run_id: str | None = None,
        step: str | None = None,
        flows: Sequence[str] | None = None,
    ) -> ClaimedItems | None:
        """Lease up to ``limit`` items of a running map step whose items are open
        (:class:`OpenItems`): pending ones, and running ones whose lease expired (their
        worker died), in order, each marked ``running`` under ``token`` (no event: the
        claimant appends ``item.started`` with its next writes). With a quota K, no more
        are leased than may still be needed: K less the items succeeded and those running
        under a live lease.

        ``run_id`` and ``step``: that step only. Otherwise the oldest running run (of
        ``flows``) with claimable items is chosen, among those ``owner`` neither holds the
        lease of nor runs items of that step already. ``None`` when nothing can be claimed
        (the run is not running, cancel was asked, or no item is claimable). Workers
        claiming at once never lease the same item.
        """

    @abstractmethod
    async def commit_items(self, lease: ItemLease, writes: Sequence[Write]) -> Commit:
        """Apply the writes of items run under ``lease`` (events, item ends, cache entries,
        artifact links) in one transaction, if the run is still running and the lease's
        owner still holds some item of the step; ``Commit(ok=False)``, with nothing written,
        otherwise. Each :class:`EndItem` is fenced by its own token (see there)."""

    @abstractmethod
    async def release_items(self, lease: ItemLease) -> int:
        """Give back the items claimed under ``lease``'s token that have not ended: they are
        ``pending`` again, for any worker to claim at once (instead of when their lease
        lapses). Returns how many; items ended, or taken over by another claim, stay as
        they are."""

    @abstractmethod
    async def release(self, lease: Lease, now: float) -> bool:
        """Give the run back to the queue (status ``queued``) without ending it."""

    # --- control --------------------------------------------------------------------------

    @abstractmethod
    async def retry_run(
        self, run_id: str, now: float, *, from_step: str | None = None, auto: bool = False
    ) -> Run:
        """Queue a finished run again, keeping its checkpoints.

        Without ``from_step``: from the first failed or partial step (its succeeded items
        are kept; given-up ones run again; later steps are invalidated). With
        ``from_step``: that step and every later one are invalidated. ``auto`` carries out
        a due automatic retry (refused when a manual retry replaced it). A retry of a
        queued or running run is refused with :class:`InvalidTransition`.
        """

    @abstractmethod
    async def request_cancel(self, run_id: str, now: float) -> Run:
        """Cancel a queued run (or one waiting for an automatic retry) at once, its steps
        not yet done closed with ``step.skipped`` events; ask a running one to stop at its
        next safe point."""

    @abstractmethod
    async def delete_run(self, run_id: str) -> None:
        """Delete a finished run with its steps, items and events (artifacts it alone used
        go at the next clean-up). Refused with :class:`InvalidTransition` while it is
        queued, running or waiting for an automatic retry."""

    @abstractmethod
    async def due_retries(self, now: float, flows: Sequence[str] | None = None) -> list[str]:
        """Ids of failed runs whose automatic retry is due."""

    @abstractmethod
    async def next_retry_at(self, flows: Sequence[str] | None = None) -> float | None:
        """When the next automatic retry falls due, if any is scheduled."""

    # --- events ----------------------------------------------------------------------------

    @abstractmethod
    async def read_events(self, run_id: str, after: int = 0, limit: int = 1000) -> list[Event]:
        """Events with ``seq > after``, in order."""

    @abstractmethod
    async def read_all_events(
        self, after: int = 0, limit: int = 1000, *, prefix: str | None = None
    ) -> list[Event]:
        """Events of every run with ``cursor > after``, oldest first; ``prefix``: only
        types starting so (``"run."``: the run-level events, for a live list of runs)."""

    @abstractmethod
    def add_listener(self, listener: Listener) -> Callable[[], None]:
        """Call ``listener(run_id)`` after commits that append events to that run (best
        effort, from any thread); returns a function that removes it."""

    @abstractmethod
    def add_queue_listener(self, listener: QueueListener) -> Callable[[], None]:
        """Call ``listener(flow)`` when a run of ``flow`` is queued: created, retried, or
        released by its worker, or ``listener("")`` when runs may have been queued unheard
        (best effort, from any thread: idle workers wake at once and poll as well); returns
        a function that removes it. SQLite hears the stores of
        this process; PostgreSQL hears every process on the database (``NOTIFY``)."""

    # --- artifacts and cache -----------------------------------------------------------------

    @abstractmethod
    async def put_artifact(self, artifact: Artifact, place: Callable[[], None], now: float) -> None:
        """Record an artifact; ``place()`` moves its bytes into place in the same
        transaction, so a concurrent clean-up never deletes a file just recorded."""

    @abstractmethod
    async def get_artifact(self, sha256: str) -> Artifact | None:
        """An artifact's metadata, or ``None``."""

    @abstractmethod
    async def cache_get(self, key: str, now: float) -> str | None:
        """A cached result's JSON text, unless absent or expired."""

    # --- provider health ----------------------------------------------------------------------

    @abstractmethod
    async def add_health_check(self, check: HealthCheck) -> None:
        """Record a check of a provider's health."""

    @abstractmethod
    async def health_history(self, provider: str, limit: int = 100) -> list[HealthCheck]:
        """A provider's checks, newest first."""

    @abstractmethod
    async def latest_health(self) -> list[HealthCheck]:
        """Each provider's latest check, by provider name."""

    # --- state shared by every worker, and counters -------------------------------------------

    @abstractmethod
    async def update_state(
        self, key: str, change: Callable[[str | None], tuple[str | None, T]]
    ) -> T:
        """Atomically: read the JSON text under ``key`` (``None`` if absent), call
        ``change(text) -> (new_text, result)``, store ``new_text`` (``None`` deletes the
        key) and return ``result``. ``change`` must be pure: it is called again when
        another process changed the value meanwhile, and must not block (it may run on a
        thread of the store's)."""

    @abstractmethod
    async def read_state(self, prefix: str) -> dict[str, str]:
        """The JSON text of every key starting with ``prefix``."""

    @abstractmethod
    async def add_counts(self, counts: Sequence[Count]) -> None:
        """Add each count to its counter's bucket, in one transaction."""

    @abstractmethod
    async def read_counts(self, since: float | None = None) -> dict[tuple[str, str, str], int]:
        """Counter totals by ``(provider, kind, name)`` over the buckets starting at or
        after ``since`` (all when ``None``)."""

    # --- retention ---------------------------------------------------------------------------

    @abstractmethod
    async def collect(
        self,
        *,
        checkpoints_before: float,
        runs_before: float,
        artifacts_before: float,
        now: float,
        remove_file: Callable[[str], None],
        health_checks_kept: int = 100,
        counts_before: float | None = None,
    ) -> GcCounts:
        """Delete checkpoints of runs finished before ``checkpoints_before`` (they are no
        longer resumable), runs finished before ``runs_before`` with their events,
        artifacts no run refers to created before ``artifacts_before`` (calling
        ``remove_file(sha256)`` for each), expired cache entries, and all but the newest
        ``health_checks_kept`` health checks of each provider, and counter buckets
        starting before ``counts_before`` (when given). Never touches a queued or
        running run, or one waiting for an automatic retry."""
