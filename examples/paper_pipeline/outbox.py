"""A local stand-in for the MCP publishing endpoint: one JSON file of published posts.

Publishing is keyed by an idempotency key (the engine's, for the ``publish_mcp`` step):
a second publish with a key already seen returns the first post instead of adding one,
so a step that published and then failed before its checkpoint was written publishes
nothing new when it runs again. Writers in several processes are serialised by a lock
file; the JSON file is replaced whole, so a reader never sees half of it.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import fcntl
import hashlib
import json
import os
import tempfile
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any


@dataclass(frozen=True, slots=True)
class Published:
    """A post in the outbox; ``duplicate`` when the key had been published before."""

    post_id: str
    idempotency_key: str
    published_at: str
    duplicate: bool

    def to_dict(self) -> dict[str, Any]:
        """The step's result."""
        return {
            "post_id": self.post_id,
            "idempotency_key": self.idempotency_key,
            "published_at": self.published_at,
            "duplicate": self.duplicate,
        }


class Outbox:
    """Posts published to the stand-in endpoint, in ``path`` (a JSON list)."""

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self.path = Path(path)

    def __repr__(self) -> str:
        return f"Outbox({str(self.path)!r})"

    @contextlib.contextmanager
    def _locked(self) -> Iterator[None]:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with open(self.path.with_suffix(".lock"), "a") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(lock, fcntl.LOCK_UN)

    def entries(self) -> list[dict[str, Any]]:
        """Every published post, oldest first."""
        try:
            data = json.loads(self.path.read_text(encoding="utf-8"))
        except FileNotFoundError:
            return []
        return list(data)

    def publish(self, post: Mapping[str, Any], *, idempotency_key: str) -> Published:
        """Publish ``post`` once per ``idempotency_key``."""
        with self._locked():
            entries = self.entries()
            for entry in entries:
                if entry["idempotency_key"] == idempotency_key:
                    return Published(
                        entry["post_id"], idempotency_key, entry["published_at"], duplicate=True
                    )
            digest = hashlib.sha256(idempotency_key.encode()).hexdigest()[:16]
            published = Published(
                f"note_{digest}",
                idempotency_key,
                dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
                duplicate=False,
            )
            entries.append(
                {
                    "post_id": published.post_id,
                    "idempotency_key": idempotency_key,
                    "published_at": published.published_at,
                    "post": dict(post),
                }
            )
            fd, temp = tempfile.mkstemp(dir=self.path.parent, prefix=".outbox-", suffix=".part")
            try:
                with os.fdopen(fd, "w", encoding="utf-8") as handle:
                    json.dump(entries, handle, ensure_ascii=False, indent=1)
                Path(temp).replace(self.path)
            except BaseException:
                Path(temp).unlink(missing_ok=True)
                raise
            return published
