"""Masking secrets in text that may reach logs, events, the store or a console.

Two kinds of secret are masked wherever they appear in a text:

- every value regen knows to be one: keys handed to :func:`remember_secret` (the provider
  registry's and adapters' keys), and the values of 8 characters or more of environment
  variables named ``*_API_KEY``, ``*_TOKEN``, ``*_SECRET`` or ``*_PASSWORD``, read at masking
  time — whatever their shape;
- values shaped like keys where they stand: ``sk-…`` keys, bearer tokens, ``api_key=…`` /
  ``token: …`` pairs whose value looks like a key (letters and digits, or a long run), query
  parameters such as ``?key=…``, ``access_token=…``, ``sig=…`` (values of 8 characters or
  more: ``?sig=sim`` is nobody's secret), the password of a URL's
  userinfo (``https://user:…@proxy``), and the key after ``API key provided:``.

A masked key keeps its ``sk-`` prefix and its last four characters (``sk-…abcd``), so two keys
can still be told apart; ordinary words are left alone (``invalid_api_key: Incorrect API
key`` stays as it is).
"""

from __future__ import annotations

import os
import re
import threading
from collections.abc import Mapping
from typing import Any

#: Values shorter than this are not masked as known secrets: they would mask ordinary words.
MIN_SECRET_LENGTH = 8
_SECRET_VARIABLES = ("_API_KEY", "_TOKEN", "_SECRET", "_PASSWORD")
_RAW_SUFFIXES: tuple[Any, ...] = (
    tuple(suffix.encode() for suffix in _SECRET_VARIABLES)
    if os.supports_bytes_environ
    else _SECRET_VARIABLES
)

_remembered: set[str] = set()
_lock = threading.Lock()
# (environment snapshot, remembered count) -> the pattern matching every known secret
_known: tuple[tuple[tuple[Any, Any], ...], int, re.Pattern[str] | None] = ((), 0, None)

_KEY_CHARS = r"[A-Za-z0-9_\-\.~+/=]"
_SK_KEY = re.compile(r"\b(sk-(?:proj-|ant-)?)([A-Za-z0-9_\-]{8,})")
_BEARER = re.compile(rf"(?i)(\bbearer\s+)({_KEY_CHARS}{{8,}})")
_NAMES = ("key", "token", "secret", "passw")
_NAMED_VALUE = re.compile(
    r"(?i)((?<![A-Za-z0-9])"
    r"(?:api[_-]?key|access[_-]?token|auth[_-]?token|token|secret|password|passwd)"
    rf"[\"']?\s*[:=]\s*[\"']?)({_KEY_CHARS}{{8,}})"
)
_QUERY_VALUE = re.compile(
    r"(?i)([?&;][\w.\-]*?(?:key|token|secret|password|passwd|sig|signature|credential)=)"
    rf"([^&#\s\"'<>]{{{MIN_SECRET_LENGTH},}})"
)
_USERINFO = re.compile(r"(?i)(\b[a-z][a-z0-9+.\-]*://[^/\s:@\"'<>]*:)([^/\s@\"'<>]+)(?=@)")
_PROVIDED = re.compile(
    r"(?i)(\b(?:api[ _-]?key|token)\s+provided:\s*)([^\s,;\"'<>]+?)(?=[.,;]?(?:\s|$|[\"'<>]))"
)


def remember_secret(value: str | None) -> None:
    """Mask ``value`` wherever it appears from now on (values under 8 characters are ignored:
    they would mask ordinary words)."""
    if value and len(value) >= MIN_SECRET_LENGTH and value not in _remembered:
        with _lock:
            _remembered.add(value)


def mask(secret: str | None) -> str:
    """A secret shown safely: ``sk-…abcd`` (its prefix and last four characters)."""
    if not secret:
        return ""
    head = "sk-" if secret.startswith("sk-") else ""
    if len(secret) <= MIN_SECRET_LENGTH:
        return f"{head}…"
    return f"{head}…{secret[-4:]}"


def mask_secrets(text: str) -> str:
    """``text`` with every known secret and anything shaped like a key masked."""
    if not text or len(text) < MIN_SECRET_LENGTH:
        return text
    return _mask(text, _known_pattern())


def mask_data(value: Any) -> Any:
    """``value`` with :func:`mask_secrets` applied to every string in it (keys of mappings
    included, lists and tuples walked); other values are returned as they are."""
    return _DataMasker().mask(value)


class _DataMasker:
    """Walks one value; reads the known secrets once, and only if a string could hold one."""

    __slots__ = ("_known", "_read")

    def __init__(self) -> None:
        self._known: re.Pattern[str] | None = None
        self._read = False

    def mask(self, value: Any) -> Any:
        if isinstance(value, str):
            if len(value) < MIN_SECRET_LENGTH:
                return value
            if not self._read:
                self._known, self._read = _known_pattern(), True
            return _mask(value, self._known)
        if isinstance(value, Mapping):
            return {self.mask(k): self.mask(v) for k, v in value.items()}
        if isinstance(value, (list, tuple)):
            return [self.mask(v) for v in value]
        return value


def _mask(text: str, known: re.Pattern[str] | None) -> str:
    if known is not None:
        text = known.sub(_mask_whole, text)
    # Each shape is looked for only where a cheap substring test says it may be: masking runs
    # on every event a step writes, and most text holds no key at all.
    lower = text.lower()
    if "sk-" in text:
        text = _SK_KEY.sub(_mask_tail, text)
    if "://" in text:
        text = _USERINFO.sub(_mask_tail, text)
    if "=" in text:
        text = _QUERY_VALUE.sub(_mask_tail, text)
    if "provided:" in lower:
        text = _PROVIDED.sub(_mask_tail, text)
    if "bearer" in lower:
        text = _BEARER.sub(_mask_key_shaped, text)
    if ("=" in text or ":" in text) and any(word in lower for word in _NAMES):
        text = _NAMED_VALUE.sub(_mask_key_shaped, text)
    return text


def _mask_whole(match: re.Match[str]) -> str:
    return mask(match.group(0))


def _mask_tail(match: re.Match[str]) -> str:
    prefix, secret = match.group(1), match.group(2)
    if secret.startswith(("…", "sk-…")):
        return match.group(0)  # masked already
    return prefix + mask(secret)


def _mask_key_shaped(match: re.Match[str]) -> str:
    return _mask_tail(match) if _looks_like_key(match.group(2)) else match.group(0)


def _looks_like_key(value: str) -> bool:
    """Letters mixed with digits, or a run too long to be a word."""
    if len(value) >= 24:
        return True
    return any(c.isdigit() for c in value) and any(c.isalpha() for c in value)


def _secret_variables() -> tuple[tuple[Any, Any], ...]:
    """The secret-named variables of the environment, as cheaply as it can be read."""
    # ``os.environ`` decodes every name it iterates; its raw mapping (CPython's ``_data``)
    # is scanned as it is, in a few microseconds. Values are decoded when they change.
    raw = getattr(os.environ, "_data", None)
    if isinstance(raw, dict):
        return tuple((k, v) for k, v in raw.items() if k.endswith(_RAW_SUFFIXES))
    return tuple((k, v) for k, v in os.environ.items() if k.endswith(_SECRET_VARIABLES))


def _decoded(value: Any) -> str:
    return os.fsdecode(value) if isinstance(value, bytes) else str(value)


def _known_pattern() -> re.Pattern[str] | None:
    """One pattern for every known secret, rebuilt only when the environment's secret
    variables or the remembered keys change."""
    global _known  # noqa: PLW0603 - a cache of the last snapshot
    snapshot = _secret_variables()
    cached_snapshot, cached_count, pattern = _known
    if snapshot == cached_snapshot and cached_count == len(_remembered):
        return pattern
    with _lock:
        values = {_decoded(value).strip() for _, value in snapshot} | _remembered
        count = len(_remembered)
    # Longest first, so a key that contains another is masked whole.
    ordered = sorted((v for v in values if len(v) >= MIN_SECRET_LENGTH), key=lambda v: (-len(v), v))
    pattern = re.compile("|".join(map(re.escape, ordered))) if ordered else None
    _known = (snapshot, count, pattern)
    return pattern
