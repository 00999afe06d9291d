"""What a step sees: ``ctx`` — params, earlier results, keys, events, artifacts."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

from regen.engine import _time
from regen.engine._json import ArtifactRef, encode
from regen.foundation import mask_data
from regen.store import AddEvent, EventType, Item, ItemStatus, LinkArtifact

if TYPE_CHECKING:
    from regen.engine._execute import Execution
    from regen.engine._shared_state import StoreState

#: Event types the engine writes itself; steps may not emit them.
RESERVED = frozenset({EventType.CHUNK, EventType.STREAM_RESET, EventType.ATTEMPT_FAILED})
_RESERVED_PREFIXES = ("run.", "step.", "item.")


class Results(Mapping[str, Any]):
    """Checkpointed results of earlier steps, by step name (a map step's is its counts)."""

    def __init__(self, values: dict[str, Any], flow: str) -> None:
        self._values = values
        self._flow = flow

    def __getitem__(self, name: str) -> Any:
        try:
            return self._values[name]
        except KeyError:
            done = ", ".join(self._values) or "none yet"
            raise KeyError(
                f"flow {self._flow!r}: no result for step {name!r} (steps with results: {done})"
            ) from None

    def __iter__(self) -> Iterator[str]:
        return iter(self._values)

    def __len__(self) -> int:
        return len(self._values)


class Artifacts:
    """``ctx.artifacts``: store binary output, get a reference to return instead."""

    def __init__(self, ctx: StepContext) -> None:
        self._ctx = ctx

    def put(self, data: bytes, content_type: str | None = None) -> ArtifactRef:
        """Store ``data`` (content-addressed; PNG/JPEG/GIF/WebP sizes read from the header)."""
        ex = self._ctx._execution
        ref = ex.engine.artifacts.put(data, content_type)
        ex.outbox.add(
            [LinkArtifact(ref.sha256, self._ctx.step, self._ctx.index)], blocking=ex.blocking
        )
        return ref

    async def aput(self, data: bytes, content_type: str | None = None) -> ArtifactRef:
        """:meth:`put` for async steps: the event loop goes on while the store records it."""
        ex = self._ctx._execution
        ref = await ex.engine.artifacts.aput(data, content_type)
        ex.outbox.add([LinkArtifact(ref.sha256, self._ctx.step, self._ctx.index)])
        return ref

    def read(self, ref: ArtifactRef | Mapping[str, Any] | str) -> bytes:
        """The bytes of an artifact (by reference, its dict form, or sha256)."""
        return self._ctx._execution.engine.artifacts.read(ref)

    def path(self, ref: ArtifactRef | Mapping[str, Any] | str) -> Path:
        """Where an artifact's file is (to serve it, or to record it in an app's own rows)."""
        return self._ctx._execution.engine.artifacts.path(ref)


class StepContext:
    """The context a step function receives as ``ctx``.

    ``params``: the run's params. ``results``: earlier steps' checkpointed results.
    ``idempotency_key``: stable across retries and take-overs of this step (or item); pass
    it to outside systems so a side effect is not repeated. ``attempt``: the attempt
    number (streaming steps). ``item``/``index``/``key``: the item of a map step.
    """

    __slots__ = (
        "_execution",
        "_output",
        "attempt",
        "idempotency_key",
        "index",
        "item",
        "key",
        "step",
    )

    def __init__(
        self,
        execution: Execution,
        step: str,
        idempotency_key: str,
        item: Any = None,
        index: int = -1,
        key: str | None = None,
    ) -> None:
        # One is made per step and per item: the run's attributes are read through
        # ``_execution`` (properties below) rather than copied in.
        self._execution = execution
        self.step = step
        self.idempotency_key = idempotency_key
        self.item = item
        self.index = index
        self.key = key
        self.attempt = 1
        self._output: Any = _UNSET

    @property
    def run_id(self) -> str:
        """The run's id."""
        return self._execution.run_id

    @property
    def flow(self) -> str:
        """The flow's name."""
        return self._execution.flow.name

    @property
    def params(self) -> Mapping[str, Any]:
        """The run's params (read-only; a date param as :class:`datetime.date`)."""
        return self._execution.params_view

    @property
    def results(self) -> Mapping[str, Any]:
        """Earlier steps' checkpointed results, by step name."""
        return self._execution.results

    @property
    def resources(self) -> Any:
        """What the run's steps share: the value of the flow's ``resources`` (or what the
        caller of :meth:`Engine.execute` passed)."""
        execution = self._execution
        if execution.resources is NO_RESOURCES:
            raise LookupError(
                f"flow {execution.flow.name!r} declares no resources: pass "
                "Flow(..., resources=fn) or Engine.execute(..., resources=value)"
            )
        return execution.resources

    @property
    def provider_state(self) -> StoreState:
        """The engine's provider state (breakers, rate limits, call counters), shared by
        every worker on its database: give it to a provider registry."""
        return self._execution.engine.provider_state

    @property
    def artifacts(self) -> Artifacts:
        """Store binary output here and return the reference it gives."""
        return Artifacts(self)

    def __repr__(self) -> str:
        where = f"{self.step}[{self.index}]" if self.index >= 0 else self.step
        return f"<StepContext run={self.run_id} step={where}>"

    @property
    def cancelled(self) -> bool:
        """Whether cancellation was asked: long sync work may check it and stop early."""
        return self._execution.cancel_requested

    def emit(self, type: str, data: Mapping[str, Any] | None = None) -> None:
        """Append an event of the app's own vocabulary (``"summary"``, ``"image_generated"``)."""
        if not isinstance(type, str) or not type:
            raise ValueError(f"event type must be a non-empty string, not {type!r}")
        if type in RESERVED or type.startswith(_RESERVED_PREFIXES):
            raise ValueError(
                f"event type {type!r} is written by the engine itself; choose another name"
            )
        self._execution.event(type, dict(data or {}), step=self.step, index=self.index)

    def progress(self, current: int, total: int | None = None, message: str | None = None) -> None:
        """Report progress (``progress`` event: ``current``, ``total``)."""
        data: dict[str, Any] = {"current": current, "total": total}
        if message is not None:
            data["message"] = message
        self._execution.event(EventType.PROGRESS, data, step=self.step, index=self.index)

    def log(self, message: str, level: str = "info") -> None:
        """A ``log`` event (``info`` / ``warning`` / ``error``)."""
        self._execution.event(
            EventType.LOG, {"level": level, "message": message}, step=self.step, index=self.index
        )

    def set_output(self, value: Any) -> None:
        """Streaming steps: make ``value`` the step's result instead of the joined text."""
        self._output = value

    async def items(
        self, step: str, status: ItemStatus | None = ItemStatus.SUCCEEDED, page: int = 500
    ) -> AsyncIterator[Item]:
        """The items of an earlier map step, read page by page (bounded memory)."""
        after = -1
        store = self._execution.store
        while True:
            rows = await store.get_items(self.run_id, step, after=after, limit=page, status=status)
            for row in rows:
                yield row
            if len(rows) < page:
                return
            after = rows[-1].idx


class _Unset:
    pass


_UNSET: Any = _Unset()


class _NoResources:
    def __repr__(self) -> str:
        return "<no resources>"


#: An execution's ``resources`` before any are given.
NO_RESOURCES: Any = _NoResources()


def event_write(type_: str, data: dict[str, Any], what: str) -> AddEvent:
    """An :class:`AddEvent` with ``data`` encoded (refusing what JSON cannot hold) and every
    secret in its text masked: steps log and emit whatever they like, keys included."""
    return AddEvent(type_, event_text(data, what), _time.now())


def event_text(data: dict[str, Any], what: str) -> str:
    """An event's data as JSON text, every secret in it masked."""
    return encode(mask_data(data), what)
