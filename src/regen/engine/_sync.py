"""``engine.sync``: the engine's methods for synchronous code.

Each call runs the engine's coroutine on a private event loop kept for the calling thread.
Called inside a running event loop (an ``async def`` FastAPI handler), it refuses with a
message to await the engine's own method: blocking that loop would stall everything on it.
"""

from __future__ import annotations

import asyncio
from collections.abc import Coroutine, Mapping, Sequence
from typing import TYPE_CHECKING, Any, TypeVar

from regen.engine._errors import EngineError
from regen.store import Artifact, Event, GcCounts, Item, ItemStatus, Run, RunStatus

if TYPE_CHECKING:
    from regen.engine._detail import RunDetail
    from regen.engine._engine import Engine, OnFailed, Started
    from regen.engine._flow import Flow
    from regen.engine._loops import Loops

T = TypeVar("T")


class SyncEngine:
    """The :class:`Engine`'s methods, blocking until done (for scripts, sync frameworks)."""

    def __init__(self, engine: Engine, loops: Loops) -> None:
        self._engine = engine
        self._loops = loops

    def _call(self, name: str, coro: Coroutine[Any, Any, T]) -> T:
        try:
            asyncio.get_running_loop()
        except RuntimeError:
            return self._loops.run(coro)
        coro.close()
        raise EngineError(
            f"engine.sync.{name}() was called inside a running event loop, which it would "
            f"block; use `await engine.{name}(...)` there instead"
        )

    def start(
        self,
        flow: Flow | str,
        params: Mapping[str, Any] | None = None,
        *,
        key: str | None = None,
        on_failed: OnFailed = "retry",
        max_retries: int | None = None,
        retry_delay: float | None = None,
    ) -> Started:
        """:meth:`Engine.start`."""
        return self._call(
            "start",
            self._engine.start(
                flow,
                params,
                key=key,
                on_failed=on_failed,
                max_retries=max_retries,
                retry_delay=retry_delay,
            ),
        )

    def run(self, flow: Flow | str, params: Mapping[str, Any] | None = None, **options: Any) -> Run:
        """:meth:`Engine.run`; sync steps run on this thread (no other run shares the
        private event loop), async ones on the loop."""
        options.setdefault("inline_sync", True)
        return self._call("run", self._engine.run(flow, params, **options))

    def execute(self, run_id: str, **options: Any) -> Run:
        """:meth:`Engine.execute`."""
        options.setdefault("inline_sync", True)
        return self._call("execute", self._engine.execute(run_id, **options))

    def wait(self, run_id: str, poll: float = 0.25) -> Run:
        """:meth:`Engine.wait`."""
        return self._call("wait", self._engine.wait(run_id, poll))

    def retry(self, run_id: str, *, from_step: str | None = None) -> Run:
        """:meth:`Engine.retry`."""
        return self._call("retry", self._engine.retry(run_id, from_step=from_step))

    def cancel(self, run_id: str) -> Run:
        """:meth:`Engine.cancel`."""
        return self._call("cancel", self._engine.cancel(run_id))

    def delete(self, run_id: str) -> None:
        """:meth:`Engine.delete`."""
        self._call("delete", self._engine.delete(run_id))

    def get_run(self, run_id: str) -> Run:
        """:meth:`Engine.get_run`."""
        return self._call("get_run", self._engine.get_run(run_id))

    def find_run(self, flow: Flow | str, key: str) -> Run | None:
        """:meth:`Engine.find_run`."""
        return self._call("find_run", self._engine.find_run(flow, key))

    def detail(self, run_id: str) -> RunDetail:
        """:meth:`Engine.detail`."""
        return self._call("detail", self._engine.detail(run_id))

    def list_runs(
        self,
        *,
        status: Sequence[RunStatus | str] | None = None,
        flow: str | None = None,
        before: float | None = None,
        limit: int = 50,
        id_prefix: str | None = None,
    ) -> list[Run]:
        """:meth:`Engine.list_runs`."""
        return self._call(
            "list_runs",
            self._engine.list_runs(
                status=status, flow=flow, before=before, limit=limit, id_prefix=id_prefix
            ),
        )

    def items(
        self,
        run_id: str,
        step: str,
        *,
        status: ItemStatus | str | None = None,
        after: int = -1,
        limit: int = 100,
    ) -> list[Item]:
        """:meth:`Engine.items`."""
        return self._call(
            "items", self._engine.items(run_id, step, status=status, after=after, limit=limit)
        )

    def read_events(self, run_id: str, after: int = 0, limit: int = 1000) -> list[Event]:
        """:meth:`Engine.read_events`."""
        return self._call("read_events", self._engine.read_events(run_id, after, limit))

    def artifact(self, sha256: str) -> Artifact | None:
        """:meth:`Engine.artifact`."""
        return self._call("artifact", self._engine.artifact(sha256))

    def check(self) -> list[str]:
        """:meth:`Engine.check`."""
        return self._call("check", self._engine.check())

    def gc(self, now: float | None = None) -> GcCounts:
        """:meth:`Engine.gc`."""
        return self._call("gc", self._engine.gc(now))
