"""The retry core's errors.

Every error regen raises derives from one root, :class:`RegenError` (from
:mod:`regen.foundation`)::

    RegenError
    ├── ConfigError            bad settings: a missing key, an invalid policy or variable
    ├── Retryable              raise it to say "this failure is weather: try again"
    ├── Permanent              raise it to say "this failure will not go away: stop"
    ├── AttemptTimeout         one attempt ran past its per-attempt timeout (also a TimeoutError)
    ├── AwaitableInSyncCall    a sync call's function returned an awaitable (also a TypeError)
    └── GiveUp                 attempts ran out, or a failure was not worth retrying

Other layers add their own subclasses of ``RegenError`` next to the code that raises them.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from regen.foundation import RegenError

if TYPE_CHECKING:
    from regen.retry._attempts import Attempt
    from regen.retry._kinds import Kind


class Retryable(RegenError):
    """Marks a failure as transient: regen retries it while attempts and time remain.

    ``kind`` names the failure in the taxonomy (``"timeout"``, ``"bad_content"``, …);
    ``retry_after`` asks for a wait of that many seconds before the next attempt.
    """

    def __init__(
        self,
        message: str = "",
        *,
        kind: Kind | str | None = None,
        status: int | None = None,
        retry_after: float | None = None,
    ) -> None:
        super().__init__(message)
        self.kind = kind
        self.status = status
        self.retry_after = retry_after

    def __reduce__(self) -> tuple[Any, ...]:
        return (_rebuild, (type(self), str(self), self.__dict__))


class Permanent(RegenError):
    """Marks a failure as final: regen stops at once, whatever attempts remain."""

    def __init__(
        self, message: str = "", *, kind: Kind | str | None = None, status: int | None = None
    ) -> None:
        super().__init__(message)
        self.kind = kind
        self.status = status

    def __reduce__(self) -> tuple[Any, ...]:
        return (_rebuild, (type(self), str(self), self.__dict__))


class AttemptTimeout(RegenError, TimeoutError):
    """One attempt ran past its per-attempt timeout (or a named phase's)."""

    def __init__(self, timeout: float, *, phase: str | None = None) -> None:
        what = f"phase {phase!r}" if phase else "attempt"
        super().__init__(f"{what} timed out after {timeout:g}s")
        self.timeout = timeout
        self.phase = phase

    def __reduce__(self) -> tuple[Any, ...]:
        return (type(self), (self.timeout,), {"phase": self.phase})


class AwaitableInSyncCall(RegenError, TypeError):
    """A sync call (``call``, ``Policy.call``, a decorated ``def``) got an awaitable back.

    The sync path cannot await it, so the failures it holds would escape the retries:
    such functions are run with ``acall`` (or decorated as an ``async def``).
    """


class GiveUp(RegenError):
    """A call failed for good: its attempts ran out, or its failure was not worth retrying.

    ``attempts`` holds every attempt in order; ``errors`` the messages of the last few
    (``keep_errors``, 3 by default). The last attempt's exception is chained as
    ``__cause__``.
    """

    keep_errors = 3

    def __init__(self, operation: str | None, attempts: Sequence[Attempt]) -> None:
        self.operation = operation
        self.attempts = tuple(attempts)
        last = self.attempts[-1] if self.attempts else None
        name = f"{operation}: " if operation else ""
        if last is None:
            message = f"{name}gave up before any attempt"
        else:
            plural = "s" if len(self.attempts) != 1 else ""
            message = (
                f"{name}gave up after {len(self.attempts)} attempt{plural}: "
                f"{last.kind} — {last.message}"
            )
        super().__init__(message)

    @property
    def last(self) -> Attempt | None:
        """The final attempt, or ``None`` when none was made."""
        return self.attempts[-1] if self.attempts else None

    @property
    def kind(self) -> Kind | None:
        """The taxonomy kind of the final failure."""
        return self.attempts[-1].kind if self.attempts else None

    @property
    def errors(self) -> list[str]:
        """Messages of the last ``keep_errors`` failed attempts, oldest first."""
        return [f"{a.kind}: {a.message}" for a in self.attempts[-self.keep_errors :]]

    def __reduce__(self) -> tuple[Any, ...]:
        return (type(self), (self.operation, self.attempts))


def _rebuild(cls: type[RegenError], message: str, state: dict[str, Any]) -> RegenError:
    error = cls.__new__(cls)
    Exception.__init__(error, message)
    error.__dict__.update(state)
    return error
