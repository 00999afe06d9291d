"""Errors of the engine.

::

    RegenError
    └── EngineError              the engine refused or could not do what was asked
        ├── FlowError            a malformed flow: duplicate step names, a map over a missing step…
        ├── ParamsError          params that do not fit the flow: unknown, missing, wrong type,
        │                        out of range, not a mapping, not strict JSON
        ├── FlowNotFound         an import string or a run's flow that cannot be loaded
        └── RunExists            a business key's run exists and may not be reused as asked

Store errors (``RunNotFound``, ``InvalidTransition``, ``LeaseLost``, …) come from
:mod:`regen.store` and are re-exported by :mod:`regen.engine`.
"""

from __future__ import annotations

from typing import Any

from regen.foundation import RegenError


class EngineError(RegenError):
    """The engine refused or could not do what was asked."""


class FlowError(EngineError):
    """The flow is malformed; raised where it is declared."""


class ParamsError(EngineError):
    """Params do not fit the flow's declaration (its message names the param and what it
    expects); no run was created."""


class FlowNotFound(EngineError):
    """An import string (``module:attr``) or a run's recorded flow cannot be loaded."""


class RunExists(EngineError):
    """A run already exists for the business key and ``on_failed="refuse"`` was asked."""

    def __init__(self, run_id: str, status: str, message: str) -> None:
        super().__init__(message)
        self.run_id = run_id
        self.status = status

    def __reduce__(self) -> tuple[Any, ...]:
        return (type(self), (self.run_id, self.status, str(self)))
