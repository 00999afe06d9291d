"""Named fault points at commit boundaries, for crash tests.

``REGEN_FAULT_POINT=after_item_work:0.2,before_step_checkpoint:0.1`` makes the process
kill itself (SIGKILL: no clean-up, like a power cut of the process) with that probability
each time execution passes the named point. ``REGEN_FAULT_SEED`` seeds the choice.
Unset (the normal case), a point costs one dictionary look-up.
"""

from __future__ import annotations

import os
import random
import signal

POINTS = (
    "after_claim",
    "after_step_work",
    "after_step_checkpoint",
    "after_item_work",
    "before_commit",
    "after_commit",
    "before_run_end",
)


def _parse(spec: str) -> dict[str, float]:
    chosen: dict[str, float] = {}
    for part in filter(None, (p.strip() for p in spec.split(","))):
        name, _, chance = part.partition(":")
        if name not in POINTS:
            raise ValueError(f"REGEN_FAULT_POINT: unknown point {name!r}; points: {POINTS}")
        chosen[name] = float(chance or 1.0)
    return chosen


_active = _parse(os.environ.get("REGEN_FAULT_POINT", ""))
_random = random.Random(os.environ.get("REGEN_FAULT_SEED"))


def _point(name: str) -> None:
    chance = _active.get(name)
    if chance is not None and _random.random() < chance:
        os.kill(os.getpid(), signal.SIGKILL)


def _pass(name: str) -> None:
    return None


#: Pass fault point ``name``; may kill the process when the environment asks for it. (Bound
#: once: with no fault point configured, passing one is an empty call on the hot paths.)
point = _point if _active else _pass
