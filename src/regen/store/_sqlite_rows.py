"""Rows of the SQLite store as records (JSON columns decoded), and row-level helpers."""

from __future__ import annotations

import json
import sqlite3
from dataclasses import replace
from typing import Any

from regen.store._records import Event, Item, ItemStatus, Run, RunStatus, Step, StepStatus


def _json(text: str | None) -> Any:
    return None if text is None else json.loads(text)


_RUN_STATUS = {str(status): status for status in RunStatus}


def run(row: tuple[Any, ...] | sqlite3.Row) -> Run:
    """A row of ``get_run`` (its columns in that order: read by index, the quick way)."""
    error = row[18]
    return Run(
        row[0],
        row[1],
        row[2],
        row[3],
        json.loads(row[4]),
        _RUN_STATUS[row[5]],
        row[6],
        row[7],
        row[8],
        row[9],
        row[10],
        row[11],
        bool(row[12]),
        row[13],
        row[14],
        row[15],
        row[16],
        row[17],
        None if error is None else json.loads(error),
        bool(row[19]),
    )


_STEP_STATUS = {str(status): status for status in StepStatus}


def step(row: tuple[Any, ...] | sqlite3.Row) -> Step:
    """A row of ``get_steps`` (its columns in that order: read by index, the quick way)."""
    output, error = row[5], row[6]
    return Step(
        row[0],
        row[1],
        row[2],
        row[3],
        _STEP_STATUS[row[4]],
        None if output is None else json.loads(output),
        None if error is None else json.loads(error),
        row[7],
        row[8],
        bool(row[9]),
        row[10],
        row[11],
        row[12],
    )


def item(row: sqlite3.Row) -> Item:
    return Item(
        run_id=row["run_id"],
        step=row["step"],
        idx=row["idx"],
        key=row["key"],
        status=ItemStatus(row["status"]),
        input=_json(row["input"]),
        output=_json(row["output"]),
        attempts=_json(row["attempts"]) or [],
        errors=_json(row["errors"]) or [],
        cached=bool(row["cached"]),
        started_at=row["started_at"],
        finished_at=row["finished_at"],
    )


def dumps(value: Any) -> str:
    return json.dumps(value, separators=(",", ":"), ensure_ascii=False)


def overlay(steps: list[Step], tail: list[sqlite3.Row]) -> list[Step]:
    """Steps as the table has them, updated by step events not yet projected into it."""
    for row in tail:
        pos = row["position"]
        if row["state"] == StepStatus.RUNNING:
            steps[pos] = _started(steps[pos], row["at"])
            continue
        old = steps[pos]
        has_output = row["output"] is not None
        steps[pos] = replace(
            old,
            status=StepStatus(row["state"]),
            finished_at=row["at"],
            error=None if row["error"] is None else json.loads(row["error"]),
            output=json.loads(row["output"]) if has_output else old.output,
            checkpointed_at=row["at"] if has_output else old.checkpointed_at,
            refresh=old.refresh and row["state"] not in ("succeeded", "partial"),
        )
        if row["next"] is not None:
            steps[row["next"]] = _started(steps[row["next"]], row["at"])
    return steps


def _started(step: Step, at: float) -> Step:
    return replace(step, status=StepStatus.RUNNING, started_at=at, finished_at=None, error=None)


def events(
    run_id: str, rows: list[sqlite3.Row], names: dict[int, tuple[str, str]], after: int, limit: int
) -> list[Event]:
    """The events ``rows`` stand for with ``seq > after``, at most ``limit``; a row whose
    transition also started a step stands for that ``step.started`` event too."""
    found: list[Event] = []
    for row in rows:
        seq = row[0]
        if seq > after:
            found.append(Event(run_id, seq, row[1], row[2], json.loads(row[3])))
        started = row[4]
        if started is not None and seq + 1 > after:
            name, kind = names[started]
            found.append(
                Event(run_id, seq + 1, row[1], "step.started", {"step": name, "kind": kind})
            )
    return found[:limit]
