"""Masking secrets in text that may reach logs, events or the store."""

from __future__ import annotations

import re

_PATTERNS = (
    # OpenAI / DeepSeek / DashScope style keys: sk-…, sk-proj-…
    re.compile(r"\b(sk-(?:proj-|ant-)?)([A-Za-z0-9_\-]{8,})"),
    # Authorization headers and bearer tokens echoed into error messages.
    re.compile(r"(?i)(bearer\s+)([A-Za-z0-9_\-\.=]{8,})"),
    re.compile(r"(?i)((?:api[_-]?key|token|secret)[\"']?\s*[:=]\s*[\"']?)([A-Za-z0-9_\-\.]{8,})"),
)


def mask(secret: str | None) -> str:
    """A secret shown safely: ``sk-…abcd`` (its prefix and last four characters)."""
    if not secret:
        return ""
    head = "sk-" if secret.startswith("sk-") else ""
    if len(secret) <= 8:
        return f"{head}…"
    return f"{head}…{secret[-4:]}"


def mask_secrets(text: str) -> str:
    """``text`` with anything that looks like an API key or token masked."""
    if not text:
        return text
    for pattern in _PATTERNS:
        text = pattern.sub(_masked_match, text)
    return text


def _masked_match(match: re.Match[str]) -> str:
    prefix, secret = match.group(1), match.group(2)
    return f"{prefix}…{secret[-4:]}"
