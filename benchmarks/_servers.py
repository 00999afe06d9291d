"""Servers the benchmarks run in processes of their own, so they do not share a core or
the GIL with the process being measured."""

from __future__ import annotations

import os
import subprocess
import sys

#: ``python -c RUN_CLI sim …`` runs ``regen sim`` from this interpreter's environment.
RUN_CLI = "import sys; from regen.cli import main; sys.argv[0] = 'regen'; main()"


def start_server(args: list[str], ready_prefix: str) -> tuple[subprocess.Popen[str], str]:
    """Start ``python -c *args``; wait for its first line, which must start with
    ``ready_prefix`` and end with its URL. Returns the process and that URL."""
    process = subprocess.Popen(
        [sys.executable, "-c", *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )
    assert process.stdout is not None
    line = process.stdout.readline()
    if not line.startswith(ready_prefix):
        process.kill()
        raise SystemExit(f"server did not start: {line!r}")
    return process, line.split()[-1]


def start_sim(*options: str) -> tuple[subprocess.Popen[str], str]:
    """``regen sim --port 0 *options`` in its own process; returns it and its URL."""
    return start_server([RUN_CLI, "sim", "--port", "0", *options], "regen sim listening on")


def stop_server(process: subprocess.Popen[str]) -> None:
    """Stop a server started here (SIGTERM, then SIGKILL after 10 s)."""
    process.terminate()
    try:
        process.wait(timeout=10)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()
    if process.stdout is not None:
        process.stdout.close()
