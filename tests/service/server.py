"""A real HTTP server on loopback for the tests: the service's app under uvicorn, in a
thread (``Served``) or as a ``regen serve`` subprocess (``ServeProcess``)."""

from __future__ import annotations

import os
import re
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import uvicorn

ROOT = Path(__file__).resolve().parents[2]
#: What a child process imports: this checkout's regen (``src``) and its tests and examples.
PYTHONPATH = os.pathsep.join([str(ROOT / "src"), str(ROOT)])


class Served:
    """``app`` served by uvicorn on 127.0.0.1, a free port, in a thread of its own
    (``lifespan="off"`` for an app that refuses lifespan events, as Django's does)."""

    def __init__(self, app: Any, *, lifespan: str = "on") -> None:
        self._sock = socket.socket()
        self._sock.bind(("127.0.0.1", 0))
        self.url = f"http://127.0.0.1:{self._sock.getsockname()[1]}"
        config = uvicorn.Config(
            app, log_level="warning", lifespan=lifespan, timeout_graceful_shutdown=1
        )
        self.server = uvicorn.Server(config)
        self._thread = threading.Thread(target=self.server.run, kwargs={"sockets": [self._sock]})

    def __enter__(self) -> Served:
        self._thread.start()
        deadline = time.monotonic() + 20
        while not self.server.started:
            if not self._thread.is_alive() or time.monotonic() > deadline:
                raise RuntimeError("the test server did not start")
            time.sleep(0.01)
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.should_exit = True
        self._thread.join(10)
        self._sock.close()


class ServeProcess:
    """``regen serve --port 0`` in ``home``; ``url`` once it says where it listens."""

    def __init__(self, home: Path, *args: str, env: dict[str, str] | None = None) -> None:
        self.home = home
        self.args = args
        self.env = {**os.environ, "PYTHONPATH": PYTHONPATH, **(env or {})}
        self.proc: subprocess.Popen[str] | None = None
        self.url = ""

    def start(self) -> ServeProcess:
        self.proc = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "regen.cli",
                "--home",
                str(self.home),
                "serve",
                "--port",
                "0",
                *self.args,
            ],
            cwd=ROOT,
            env=self.env,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        assert self.proc.stdout is not None
        line = self.proc.stdout.readline()
        found = re.search(r"http://[\d.]+:\d+", line)
        if found is None:
            rest = self.proc.stdout.read() if self.proc.poll() is not None else ""
            raise RuntimeError(f"regen serve did not start: {line}{rest}")
        self.url = found.group(0)
        # Keep reading what it prints, so a full pipe never blocks the server.
        self.output: list[str] = []
        self._drain = threading.Thread(target=self.output.extend, args=(self.proc.stdout,))
        self._drain.start()
        for _ in range(500):
            try:
                if httpx.get(f"{self.url}/healthz", timeout=1).status_code == 200:
                    return self
            except httpx.TransportError:
                time.sleep(0.01)
        raise RuntimeError("regen serve did not answer /healthz")

    def kill(self) -> None:
        if self.proc is not None:
            self.proc.kill()
            self.proc.wait(10)
            self._drain.join(10)
            assert self.proc.stdout is not None
            self.proc.stdout.close()

    def __enter__(self) -> ServeProcess:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.kill()


def sse_events(response: httpx.Response) -> Iterator[dict[str, Any]]:
    """Parse an event stream: each event's ``id``, ``event`` and ``data`` (text); comments
    and ``retry:`` lines are returned as ``{"comment": …}`` / ``{"retry": …}``."""
    current: dict[str, Any] = {}
    for line in response.iter_lines():
        if line == "":
            if current:
                yield current
                current = {}
        elif line.startswith(":"):
            yield {"comment": line[1:].strip()}
        else:
            field, _, value = line.partition(":")
            current[field] = value[1:] if value.startswith(" ") else value
