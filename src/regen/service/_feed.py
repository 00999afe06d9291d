"""One reader of a run's event log shared by all who follow the run over SSE.

Each follower first replays the log from where it resumes, straight from the store, then
joins the run's feed: a single task tailing the log (``engine.events(follow=True)``) that
hands each new event to every follower's bounded queue without waiting. A follower that
falls behind (its queue is full: a slow client) is dropped from the feed, catches up from
the store at its own pace and joins again, so it never slows the run or other followers,
and never misses an event.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator

from regen.engine import DatabaseUnreachable, Engine, Event, RunNotFound
from regen.service._replay import replayed

logger = logging.getLogger("regen.service")

#: Events a follower may have waiting before it counts as fallen behind.
QUEUE_SIZE = 1024
#: How long the feed waits before following again when the database cannot be reached.
_OUTAGE_PAUSE_S = 1.0
_PAGE = 1000


#: What a follower's queue receives when it has had nothing for a keep-alive interval.
IDLE = "idle"
#: A follower's queue: events, ``IDLE``, and ``None`` once the feed is over.
Queued = Event | str | None


class _Follower:
    __slots__ = ("behind", "queue", "quiet")

    def __init__(self) -> None:
        self.queue: asyncio.Queue[Queued] = asyncio.Queue(QUEUE_SIZE)
        self.behind = False
        self.quiet = 0  # ticks (half a keep-alive interval each) since it was handed anything


class _Feed:
    """The one task tailing a run's log for its followers, and one timer that tells idle
    followers to send a keep-alive (not a timer per follower and event: they are many).

    The timer ticks every half interval and a follower sends a keep-alive on its second
    quiet tick: a stream is never silent for longer than one interval."""

    def __init__(self, feeds: RunFeeds, run_id: str, after: int) -> None:
        self.followers: set[_Follower] = set()
        loop = asyncio.get_running_loop()
        self.task = loop.create_task(self._tail(feeds, run_id, after), name=f"regen-feed-{run_id}")
        self.ticker = loop.create_task(self._tick(feeds.keepalive), name=f"regen-tick-{run_id}")

    def _hand_over(self, event: Event) -> None:
        for follower in list(self.followers):
            follower.quiet = 0
            try:
                follower.queue.put_nowait(event)
            except asyncio.QueueFull:
                follower.behind = True
                self.followers.discard(follower)

    async def _tick(self, keepalive: float) -> None:
        while True:
            await asyncio.sleep(keepalive / 2)
            for follower in self.followers:
                follower.quiet += 1
                if follower.quiet >= 2:
                    follower.quiet = 0
                    with contextlib.suppress(asyncio.QueueFull):
                        follower.queue.put_nowait(IDLE)

    async def _tail(self, feeds: RunFeeds, run_id: str, after: int) -> None:
        try:
            while True:
                try:
                    async for event in feeds.engine.events(
                        run_id, after=after, follow=True, poll=feeds.poll
                    ):
                        after = event.seq
                        self._hand_over(event)
                    return
                except DatabaseUnreachable as exc:
                    # Weather: the followers keep their streams (and their keep-alives)
                    # and get what was written meanwhile once the database is back.
                    logger.warning(
                        "regen: following run %s: %s; trying again",
                        run_id,
                        exc,
                        extra={"run_id": run_id},
                    )
                    await asyncio.sleep(_OUTAGE_PAUSE_S)
        except RunNotFound:
            pass
        except Exception:
            logger.exception("regen: following run %s failed", run_id, extra={"run_id": run_id})
        finally:
            self.ticker.cancel()
            feeds.ended(run_id, self)
            for follower in self.followers:
                # A full queue already holds what the follower needs; it reads the store
                # after its queue runs dry (see RunFeeds.follow).
                with contextlib.suppress(asyncio.QueueFull):
                    follower.queue.put_nowait(None)
                follower.behind = True


class RunFeeds:
    """The feeds of the runs being followed, one per run, made and ended on demand."""

    def __init__(self, engine: Engine, *, poll: float = 0.25, keepalive: float = 15.0) -> None:
        self.engine = engine
        self.poll = poll
        self.keepalive = keepalive
        self._feeds: dict[str, _Feed] = {}

    def ended(self, run_id: str, feed: _Feed) -> None:
        if self._feeds.get(run_id) is feed:
            del self._feeds[run_id]

    def _join(self, run_id: str, after: int) -> _Follower:
        follower = _Follower()
        feed = self._feeds.get(run_id)
        if feed is None:
            feed = self._feeds[run_id] = _Feed(self, run_id, after)
        feed.followers.add(follower)
        return follower

    def _leave(self, run_id: str, follower: _Follower) -> None:
        feed = self._feeds.get(run_id)
        if feed is None:
            return
        feed.followers.discard(follower)
        if not feed.followers:
            del self._feeds[run_id]
            feed.task.cancel()
            feed.ticker.cancel()

    async def _read(self, run_id: str, after: int) -> list[Event]:
        """Every event after ``after`` now in the store, as a replay sends them."""
        events: list[Event] = []
        while True:
            page = await self.engine.read_events(run_id, after, _PAGE)
            events.extend(page)
            if len(page) < _PAGE:
                return replayed(events)
            after = page[-1].seq

    async def follow(self, run_id: str, after: int = 0) -> AsyncIterator[list[Event]]:
        """The run's events with ``seq > after``, in batches: the log replayed (without
        discarded stream attempts), then new events as they are written, until the run has
        ended. A batch holds what is waiting (a busy server sends several events in one
        write); an empty one comes when nothing came for a keep-alive interval."""
        last = after
        while True:
            replay = await self._read(run_id, last)
            if replay:
                last = replay[-1].seq
                yield replay
            follower = self._join(run_id, last)
            try:
                # Events written between the replay and joining: the feed may be past them.
                replay = await self._read(run_id, last)
                if replay:
                    last = replay[-1].seq
                    yield replay
                ended = False
                while not ended:
                    queued = await follower.queue.get()
                    batch: list[Event] = []
                    idle = False
                    while True:
                        if queued is None:  # the feed is over
                            ended = True
                            break
                        if isinstance(queued, str):
                            idle = True
                        elif queued.seq > last:
                            last = queued.seq
                            batch.append(queued)
                        if follower.queue.empty():
                            break
                        queued = follower.queue.get_nowait()
                    if batch or idle:
                        yield batch
                    if follower.behind and follower.queue.empty():
                        break
            finally:
                self._leave(run_id, follower)
            if not follower.behind:
                break
            run = await self.engine.get_run(run_id)
            if run.status.finished and run.retry_at is None:
                # The status was read before the last events: read them, then stop.
                replay = await self._read(run_id, last)
                if replay:
                    yield replay
                return
