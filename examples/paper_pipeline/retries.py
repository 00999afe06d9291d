"""Automatic and manual retries of a task, counted apart (seed 003: "自动+手动").

A regen run has one ``retry_count`` for both kinds, and the engine schedules an automatic
retry while ``retry_count < max_retries``: each manual retry would use up one automatic
retry. The app keeps the two apart:

- the run's event log says which retries the engine made on its own (``run.queued`` with
  ``auto: true``) and which were asked for (``auto: false``);
- the retries the app itself makes as automatic ones (:func:`continue_automatic_retries`,
  after a manual retry failed) or to clear a task's checkpoints go through
  ``Engine.retry``, which logs them as asked for: :class:`RetryLedger` notes them, so that
  they are counted as what they are.
"""

from __future__ import annotations

import json
import os
import tempfile
import threading
from dataclasses import dataclass
from pathlib import Path

from regen.engine import Engine

AUTOMATIC, CLEARED = "automatic", "cleared"


@dataclass(frozen=True, slots=True)
class RetryCounts:
    """How often a task was retried: ``automatic`` (the budget ``AUTO_RETRY_MAX_ATTEMPTS``
    bounds) and ``manual`` (``retry``, ``retry --from``: never bounded by that budget)."""

    automatic: int = 0
    manual: int = 0


class RetryLedger:
    """The retries the app made through ``Engine.retry`` that were not manual ones, by run,
    in a small JSON file (``<home>/paper_pipeline/retries.json``), written atomically."""

    _lock = threading.Lock()

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self.path = Path(path)

    def _read(self) -> dict[str, dict[str, int]]:
        try:
            data = json.loads(self.path.read_text(encoding="utf-8"))
        except FileNotFoundError:
            return {}
        return data if isinstance(data, dict) else {}

    def note(self, run_id: str, kind: str) -> None:
        """One more retry of ``kind`` (:data:`AUTOMATIC` or :data:`CLEARED`) for the run."""
        with self._lock:
            data = self._read()
            kinds = data.setdefault(run_id, {})
            kinds[kind] = kinds.get(kind, 0) + 1
            self.path.parent.mkdir(parents=True, exist_ok=True)
            fd, temp = tempfile.mkstemp(dir=self.path.parent, prefix=".retries.", suffix=".part")
            with os.fdopen(fd, "w", encoding="utf-8") as handle:
                json.dump(data, handle)
            Path(temp).replace(self.path)

    def count(self, run_id: str, kind: str) -> int:
        """How many retries of ``kind`` the app noted for the run."""
        return int(self._read().get(run_id, {}).get(kind, 0))


def retry_counts(engine: Engine, run_id: str, ledger: RetryLedger) -> RetryCounts:
    """The run's automatic and manual retries, from its event log and the ledger."""
    engine_automatic = asked = 0
    after = 0
    while page := engine.read_events(run_id, after, 1000):
        for event in page:
            if event.type == "run.queued" and "retry" in event.data:
                if event.data.get("auto"):
                    engine_automatic += 1
                else:
                    asked += 1
        after = page[-1].seq
    app_automatic = ledger.count(run_id, AUTOMATIC)
    cleared = ledger.count(run_id, CLEARED)
    return RetryCounts(engine_automatic + app_automatic, max(asked - app_automatic - cleared, 0))
