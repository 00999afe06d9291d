"""The PostgreSQL store's shared state and counters.

A value is changed by compare-and-set on its text: read it, compute the new one (no lock
held meanwhile), then write only if the row still holds what was read; when another
worker changed it first, read again and compute again. ``change`` is pure, so an equal
text means an equal outcome whatever happened in between, and no row lock is held while
Python code runs.
"""

from __future__ import annotations

import asyncio
import random
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any, TypeAlias, TypeVar

from regen.store import _queries
from regen.store._records import Count

if TYPE_CHECKING:
    from psycopg import AsyncConnection

    Conn: TypeAlias = AsyncConnection[dict[str, Any]]

Q = _queries.queries("postgres")
T = TypeVar("T")
#: Compare-and-set rounds lost in a row before pausing a little (a few milliseconds,
#: jittered) so that writers contending for one key take turns.
_EAGER_ROUNDS = 3


async def update_state(
    conn: Conn, key: str, change: Callable[[str | None], tuple[str | None, T]]
) -> T:
    """Apply ``change`` to the value under ``key`` by compare-and-set until it holds."""
    lost = 0
    while True:
        row = await (await conn.execute(Q["state_get"], {"key": key})).fetchone()
        old = None if row is None else str(row["value"])
        new, result = change(old)
        if new == old:
            return result
        if old is None:
            query, args = Q["state_insert"], {"key": key, "value": new}
        elif new is None:
            query, args = Q["state_remove"], {"key": key, "old": old}
        else:
            query, args = Q["state_swap"], {"key": key, "value": new, "old": old}
        if (await conn.execute(query, args)).rowcount == 1:
            return result
        lost += 1
        if lost >= _EAGER_ROUNDS:
            await asyncio.sleep(random.uniform(0.001, 0.005 * min(lost, 20)))


async def read_state(conn: Conn, prefix: str) -> dict[str, str]:
    """The value of every key starting with ``prefix``."""
    rows = await (await conn.execute(Q["state_read"], {"prefix": prefix})).fetchall()
    return {str(r["key"]): str(r["value"]) for r in rows}


async def add_counts(conn: Conn, counts: Sequence[Count]) -> None:
    """Add each count to its bucket, in key order (so two workers adding to the same rows
    lock them in the same order and never deadlock)."""
    merged: dict[tuple[float, str, str, str], int] = {}
    for c in counts:
        key = (c.bucket, c.provider, c.kind, c.name)
        merged[key] = merged.get(key, 0) + c.n
    rows = [
        {"bucket": b, "provider": p, "kind": k, "name": name, "n": n}
        for (b, p, k, name), n in sorted(merged.items())
    ]
    async with conn.cursor() as cursor:
        await cursor.executemany(Q["add_count"], rows)


async def read_counts(conn: Conn, since: float | None) -> dict[tuple[str, str, str], int]:
    """Totals by ``(provider, kind, name)`` over buckets starting at or after ``since``."""
    rows = await (await conn.execute(Q["read_counts"], {"since": since})).fetchall()
    return {(str(r["provider"]), str(r["kind"]), str(r["name"])): int(r["n"]) for r in rows}
