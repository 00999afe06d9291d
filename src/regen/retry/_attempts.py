"""The record of one attempt: what happened, how long it took, what came next."""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Any

from regen.retry._kinds import Kind


@dataclass(frozen=True, slots=True)
class Attempt:
    """One failed attempt of a call.

    ``number`` counts from 1. ``started_at`` is wall-clock time (seconds since the epoch),
    ``duration`` seconds. ``wait`` is the pause before the next attempt, ``None`` when
    there was none. ``error`` is the exception itself; it is dropped when the attempt is
    pickled or turned into a dict, as exceptions do not always survive either.
    """

    number: int
    started_at: float
    duration: float
    kind: Kind
    retry: bool
    message: str
    status: int | None = None
    reason: str = ""
    wait: float | None = None
    error: BaseException | None = field(default=None, compare=False, repr=False)

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready form, without the exception object."""
        return {
            "number": self.number,
            "started_at": self.started_at,
            "duration": self.duration,
            "kind": str(self.kind),
            "retry": self.retry,
            "message": self.message,
            "status": self.status,
            "reason": self.reason,
            "wait": self.wait,
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Attempt:
        """Rebuild an attempt from :meth:`to_dict`'s output."""
        return cls(
            number=int(data["number"]),
            started_at=float(data["started_at"]),
            duration=float(data["duration"]),
            kind=Kind(data["kind"]),
            retry=bool(data["retry"]),
            message=str(data["message"]),
            status=data.get("status"),
            reason=str(data.get("reason", "")),
            wait=data.get("wait"),
        )

    def __reduce__(self) -> tuple[Any, ...]:
        return (Attempt.from_dict, (self.to_dict(),))

    def waited(self, wait: float | None) -> Attempt:
        """The same attempt, with the pause that followed it."""
        return replace(self, wait=wait)
