"""A plain SSE client of the API (httpx streaming, frames parsed by hand), for scripts and
the example's tests: what a reading page does, without a browser."""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

import httpx

PREFIX = "/api/v1/novels"


@dataclass
class Sse:
    """One event as received."""

    id: str
    event: str
    data: dict[str, Any]


@dataclass
class Received:
    """A response's status, its events, and the SSE lines around them."""

    status: int
    events: list[Sse] = field(default_factory=list)
    retry: str | None = None
    comments: int = 0
    body: Any = None

    @property
    def ids(self) -> list[str]:
        return [e.id for e in self.events]

    def chapter(self) -> tuple[str | None, str, list[dict[str, Any]] | None]:
        """Title, text and options as the reading page builds them: the text starts
        afresh on every ``summary``."""
        title, text, options = None, "", None
        for event in self.events:
            if event.event == "summary":
                title, text = event.data["title"], ""
            elif event.event == "content":
                text += event.data["text"]
            elif event.event == "complete":
                options = event.data["options"]
        return title, text, options

    def kinds(self) -> list[str]:
        return [e.event for e in self.events]


def read(response: httpx.Response, stop: Callable[[list[Sse]], bool] | None = None) -> Received:
    """Parse an SSE response (until ``stop(events)`` says so, or its end)."""
    received = Received(response.status_code)
    if response.status_code != 200:
        response.read()
        received.body = response.json() if response.content else None
        return received
    return parse(response.iter_lines(), received, stop)


def parse(
    lines: Iterable[str],
    received: Received | None = None,
    stop: Callable[[list[Sse]], bool] | None = None,
) -> Received:
    """Parse SSE ``lines`` (``text.split("\\n")`` of a whole body works too)."""
    received = Received(200) if received is None else received
    fields: dict[str, str] = {}
    for line in lines:
        if line == "":
            if "event" in fields:
                received.events.append(
                    Sse(fields.get("id", ""), fields["event"], json.loads(fields["data"]))
                )
                if stop is not None and stop(received.events):
                    break
            elif "retry" in fields:
                received.retry = fields["retry"]
            fields = {}
            continue
        if line.startswith(":"):
            received.comments += 1
            continue
        name, _, value = line.partition(":")
        fields[name] = value.removeprefix(" ")
    return received


def generate(
    client: httpx.Client,
    novel_id: int,
    number: int = 0,
    *,
    last_event_id: str | None = None,
    stop: Callable[[list[Sse]], bool] | None = None,
    user: int | None = None,
) -> Received:
    """``POST …/chapters/generate`` read as a stream."""
    headers = {}
    if last_event_id is not None:
        headers["Last-Event-ID"] = last_event_id
    if user is not None:
        headers["X-User-Id"] = str(user)
    with client.stream(
        "POST",
        f"{PREFIX}/{novel_id}/chapters/generate",
        json={"chapter_number": number},
        headers=headers,
        timeout=30,
    ) as response:
        return read(response, stop)


def after_content(count: int) -> Callable[[list[Sse]], bool]:
    """Stop once ``count`` content events came."""
    return lambda events: sum(e.event == "content" for e in events) >= count


def wait_for_status(
    client: httpx.Client, novel_id: int, status: str, timeout: float = 20
) -> dict[str, Any]:
    """Poll the latest chapter (small steps) until it has ``status``."""
    deadline = time.monotonic() + timeout
    while True:
        latest = client.get(f"{PREFIX}/{novel_id}/chapters/latest").json()
        if latest is not None and latest["status"] == status:
            return dict(latest)
        assert time.monotonic() < deadline, f"chapter never became {status}: {latest}"
        time.sleep(0.02)
