"""``Secret``: an API key that shows itself masked everywhere but where it is sent."""

from __future__ import annotations

from typing import Any, final

from regen.foundation import mask


@final
class Secret:
    """A secret string whose ``repr``, ``str`` and format are masked (``sk-…abcd``).

    Only :meth:`reveal` returns the value, and only the transport calls it, to build the
    ``Authorization`` header. Pickling is refused so a key cannot slip into a store.
    """

    __slots__ = ("_value",)

    def __init__(self, value: str) -> None:
        if not isinstance(value, str):
            raise TypeError(f"Secret expects a str, got {type(value).__name__}")
        self._value = value

    def reveal(self) -> str:
        """The secret itself. Send it; never log it."""
        return self._value

    @property
    def masked(self) -> str:
        """The secret shown safely: its prefix and last four characters."""
        return mask(self._value)

    def __repr__(self) -> str:
        return f"Secret({self.masked!r})"

    def __str__(self) -> str:
        return self.masked

    def __format__(self, spec: str) -> str:
        return format(self.masked, spec)

    def __bool__(self) -> bool:
        return bool(self._value)

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Secret) and other._value == self._value

    def __hash__(self) -> int:
        return hash(("Secret", self._value))

    def __reduce__(self) -> Any:
        raise TypeError("a Secret is not picklable: store the name of its variable instead")
