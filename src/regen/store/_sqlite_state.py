"""The SQLite store's shared state and counters: each function runs in one transaction of
the writer, so a read-modify-write is atomic across every process on the machine (a
write after another process's commit is refused as busy, and the transaction runs again
on the new value)."""

from __future__ import annotations

import sqlite3
from collections.abc import Callable, Sequence
from typing import TypeVar

from regen.store import _queries
from regen.store._records import Count

Q = _queries.queries("sqlite")
T = TypeVar("T")


def get_state(conn: sqlite3.Connection, key: str) -> str | None:
    """The value under ``key``, or ``None``."""
    row = conn.execute(Q["state_get"], {"key": key}).fetchone()
    return None if row is None else str(row[0])


def update_state(
    conn: sqlite3.Connection, key: str, change: Callable[[str | None], tuple[str | None, T]]
) -> T:
    """Read the value under ``key``, apply ``change`` and write what it returns."""
    old = get_state(conn, key)
    new, result = change(old)
    if new != old:
        if new is None:
            conn.execute(Q["state_delete"], {"key": key})
        else:
            conn.execute(Q["state_put"], {"key": key, "value": new})
    return result


def read_state(conn: sqlite3.Connection, prefix: str) -> dict[str, str]:
    """The value of every key starting with ``prefix``."""
    return {
        str(row["key"]): str(row["value"])
        for row in conn.execute(Q["state_read"], {"prefix": prefix})
    }


def add_counts(conn: sqlite3.Connection, counts: Sequence[Count]) -> None:
    """Add each count to its bucket."""
    conn.executemany(Q["add_count"], [_args(c) for c in counts])


def read_counts(conn: sqlite3.Connection, since: float | None) -> dict[tuple[str, str, str], int]:
    """Totals by ``(provider, kind, name)`` over buckets starting at or after ``since``."""
    return {
        (str(r["provider"]), str(r["kind"]), str(r["name"])): int(r["n"])
        for r in conn.execute(Q["read_counts"], {"since": since})
    }


def _args(count: Count) -> dict[str, object]:
    return {
        "bucket": count.bucket,
        "provider": count.provider,
        "kind": count.kind,
        "name": count.name,
        "n": count.n,
    }
