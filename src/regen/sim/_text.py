"""Deterministic chat replies: the same prompt always gets the same words."""

from __future__ import annotations

import functools
import hashlib
import random

# Prose reads better than 53 quoted words.
_WORDS = (  # noqa: SIM905
    "the quiet river carries light across old stone while patient hands gather "
    "morning bread and distant bells count hours over green hills where small birds "
    "write circles in the wind a lantern waits by the open door stories travel slowly "
    "through the valley and every page remembers the voice that read it first"
).split()


@functools.lru_cache(maxsize=4096)
def reply_words(prompt: str, limit: int | None = None) -> tuple[str, ...]:
    """The reply to ``prompt`` as words, each but the first with its leading space.

    At most ``limit`` words when given (the reply is then cut, as by ``max_tokens``).
    """
    digest = hashlib.sha256(prompt.encode()).digest()
    rng = random.Random(digest)
    count = 24 + digest[0] % 24
    snippet = " ".join(prompt.split())[:40] or "(empty prompt)"
    words = ["Simulated", " reply", " to", f" «{snippet}»:"]
    words.extend(" " + rng.choice(_WORDS) for _ in range(count))
    words[-1] += "."
    if limit is not None:
        words = words[: max(1, limit)]
    return tuple(words)


def count_tokens(text: str) -> int:
    """A rough token count (words), for ``usage``."""
    return max(1, len(text.split()))
