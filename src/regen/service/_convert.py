"""Engine records as the API's JSON."""

from __future__ import annotations

from dataclasses import asdict
from typing import Any

from regen.engine import Item, Run


def run_json(run: Run) -> dict[str, Any]:
    """A run's fields, its status as text."""
    out = asdict(run)
    out["status"] = str(run.status)
    return out


def item_json(item: Item) -> dict[str, Any]:
    """An item's fields, its status as text."""
    out = asdict(item)
    out["status"] = str(item.status)
    return out
