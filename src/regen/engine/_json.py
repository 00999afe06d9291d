"""Checkpoints are JSON: encoding a step's value, and the artifacts it refers to."""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from regen.engine._errors import EngineError


@dataclass(frozen=True, slots=True)
class ArtifactRef:
    """A reference to a stored binary output, returned by steps instead of bytes.

    In a checkpoint it is the dict of :meth:`to_dict` (``{"artifact": sha256, …}``).
    """

    sha256: str
    size: int
    content_type: str
    width: int | None = None
    height: int | None = None

    def to_dict(self) -> dict[str, Any]:
        """The JSON form kept in checkpoints and events."""
        return {
            "artifact": self.sha256,
            "size": self.size,
            "content_type": self.content_type,
            "width": self.width,
            "height": self.height,
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> ArtifactRef:
        """Rebuild a reference from :meth:`to_dict`'s output (as later steps receive it)."""
        return cls(
            str(data["artifact"]),
            int(data["size"]),
            str(data["content_type"]),
            data.get("width"),
            data.get("height"),
        )


class NotJSON(EngineError):
    """A step returned (or emitted) a value that cannot be kept as JSON."""


_PLAIN = json.JSONEncoder(separators=(",", ":"), ensure_ascii=False)
# Scalars whose JSON is known without the encoder's machinery (exact types: no subclasses).
_QUICK: dict[type, Any] = {
    int: int.__repr__,
    bool: lambda b: "true" if b else "false",
    type(None): lambda _: "null",
    str: _PLAIN.encode,
}


def encode(value: Any, what: str, found: list[str] | None = None) -> str:
    """``value`` as compact JSON; ``found`` collects the sha256 of artifacts inside it."""
    quick = _QUICK.get(type(value))
    if quick is not None:
        return str(quick(value))
    try:
        return _PLAIN.encode(value)  # the common case: plain JSON values, no hook needed
    except (TypeError, ValueError):
        pass

    def default(obj: Any) -> Any:
        if isinstance(obj, ArtifactRef):
            if found is not None:
                found.append(obj.sha256)
            return obj.to_dict()
        to_dict = getattr(obj, "to_dict", None)
        if callable(to_dict):
            return to_dict()
        if isinstance(obj, (set, frozenset, tuple)):
            return list(obj)
        if isinstance(obj, bytes):
            raise TypeError(
                "bytes: store binary output with ctx.artifacts.put() and return the reference"
            )
        raise TypeError(f"{type(obj).__name__} is not JSON-serialisable")

    try:
        return json.dumps(value, default=default, separators=(",", ":"), ensure_ascii=False)
    except (TypeError, ValueError) as exc:
        raise NotJSON(f"{what}: {exc}") from exc


def decode(output: str | None) -> Any:
    """A checkpoint's value as later steps see it."""
    return None if output is None else json.loads(output)
