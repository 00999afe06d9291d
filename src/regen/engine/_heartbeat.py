"""Keeping leases alive: a thread renews every lease this engine holds.

A thread rather than a task, so a sync step that blocks the event loop (run inline by
``run_sync``) does not let its lease expire while it works.
"""

from __future__ import annotations

import logging
import threading

from regen.engine import _time
from regen.engine._writer import Observer
from regen.store import Lease, Store

logger = logging.getLogger("regen.engine")


class Heartbeat:
    """Renews held leases every ``ttl / 3`` seconds."""

    def __init__(self, store: Store, ttl: float, observer: Observer) -> None:
        self._store = store
        self._ttl = ttl
        self._observer = observer
        self._leases: dict[str, Lease] = {}
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def hold(self, lease: Lease) -> None:
        """Start renewing ``lease``."""
        with self._lock:
            self._leases[lease.run_id] = lease
            if self._thread is None:
                self._thread = threading.Thread(
                    target=self._loop, name="regen-heartbeat", daemon=True
                )
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
        while not self._stop.wait(self._ttl / 3):
            with self._lock:
                leases = list(self._leases.values())
            if not leases:
                continue
            try:
                outcome = self._store.heartbeat(leases, self._ttl, _time.now())
            except Exception:
                logger.warning("regen: heartbeat failed", exc_info=True)
                continue
            for lease in leases:
                result = outcome.get(lease.run_id)
                if result is not None:
                    self._observer(lease, result)
