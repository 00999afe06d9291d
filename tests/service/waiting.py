"""Waiting on a served run in small steps (never one long sleep)."""

from __future__ import annotations

import time
from typing import Any

import httpx

FINAL = {"succeeded", "partial", "failed", "cancelled"}


def wait_final(client: httpx.Client, run_id: str, timeout: float = 30.0) -> dict[str, Any]:
    """The run's detail once it has ended (and no automatic retry is pending)."""
    deadline = time.monotonic() + timeout
    while True:
        detail: dict[str, Any] = client.get(f"/api/runs/{run_id}").json()
        if detail["status"] in FINAL and detail["retry_at"] is None:
            return detail
        if time.monotonic() > deadline:
            raise AssertionError(f"run {run_id} still {detail['status']} after {timeout} s")
        time.sleep(0.02)
