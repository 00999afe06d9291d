"""Keeping leases alive: a thread renews every lease this engine holds.

A thread (with an event loop of its own to await the store) rather than a task, so a sync
step that blocks the engine's event loop (run inline by ``engine.sync.run``) does not let its
lease expire while it works.
"""

from __future__ import annotations

import asyncio
import collections
import logging
import threading
from collections.abc import Callable

from regen.engine import _time
from regen.store import Commit, Lease, Store

Observer = Callable[[Lease, Commit], None]

logger = logging.getLogger("regen.engine")


class Heartbeat:
    """Renews held leases every ``ttl / 3`` seconds: those of runs, and those of the map
    items ``owner`` runs under the claim tokens it holds (items claimed, then dropped, are
    not renewed: they lapse, and another worker takes them)."""

    def __init__(self, store: Store, ttl: float, observer: Observer, owner: str) -> None:
        self._store = store
        self._ttl = ttl
        self._observer = observer
        self._owner = owner
        self._tokens: collections.Counter[str] = collections.Counter()
        self._leases: dict[str, Lease] = {}
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def hold(self, lease: Lease) -> None:
        """Start renewing ``lease``."""
        with self._lock:
            self._leases[lease.run_id] = lease
            self._start()

    def hold_items(self, token: str) -> None:
        """Start renewing the leases of the items claimed under ``token``."""
        with self._lock:
            self._tokens[token] += 1
            self._start()

    def drop_items(self, token: str) -> None:
        """Stop renewing them (once for each :meth:`hold_items`)."""
        with self._lock:
            self._tokens[token] -= 1
            if self._tokens[token] <= 0:
                del self._tokens[token]

    def _start(self) -> None:
        if self._thread is None:
            self._thread = threading.Thread(target=self._loop, name="regen-heartbeat", daemon=True)
            self._thread.start()

    def drop(self, run_id: str) -> None:
        """Stop renewing the lease of ``run_id``."""
        with self._lock:
            self._leases.pop(run_id, None)

    def close(self) -> None:
        """Stop the thread."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join()

    def _loop(self) -> None:
        with asyncio.Runner() as runner:
            while not self._stop.wait(self._ttl / 3):
                self._beat(runner)

    def _beat(self, runner: asyncio.Runner) -> None:
        with self._lock:
            leases = list(self._leases.values())
            tokens = list(self._tokens)
        if not leases and not tokens:
            return
        try:
            outcome = runner.run(
                self._store.heartbeat(
                    leases, self._ttl, _time.now(), items_of=self._owner, item_tokens=tokens
                )
            )
        except Exception:
            logger.warning("regen: heartbeat failed", exc_info=True)
            return
        for lease in leases:
            result = outcome.get(lease.run_id)
            if result is not None:
                self._observer(lease, result)
