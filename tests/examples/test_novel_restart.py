"""The novel example's server killed mid-chapter and started again: the chapter is
resumed (never left generating), and a reader who reconnects with ``Last-Event-ID`` gets
the rest of it, with no text lost or repeated."""

from __future__ import annotations

import contextlib
import os
import re
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from examples.novel.client import PREFIX, Received, after_content, generate, wait_for_status

from regen.sim import SimServer, run_simulator

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture
def sim() -> Iterator[SimServer]:
    with run_simulator(chunk_delay=0.05) as server:  # a chapter streams for 2 s or more
        yield server


@contextlib.contextmanager
def server(home: Path, sim: SimServer, log: Path) -> Iterator[tuple[str, subprocess.Popen[str]]]:
    """``python -m examples.novel serve`` on a free port; its URL and process."""
    env = {
        **os.environ,
        "NOVEL_BASE_URL": sim.openai_base_url,
        "NOVEL_API_KEY": "sk-novel-test-00000002",
        "NOVEL_MODEL": "sim",
        "REGEN_LEASE_TTL_S": "1",  # a dead server's chapter is taken over a second later
        "PYTHONPATH": str(ROOT),
    }
    with log.open("a") as errors:
        process = subprocess.Popen(
            [sys.executable, "-m", "examples.novel", "serve", "--home", str(home), "--port", "0"],
            cwd=ROOT,
            env=env,
            stdout=subprocess.PIPE,
            stderr=errors,
            text=True,
        )
    try:
        assert process.stdout is not None
        url = None
        for line in process.stdout:
            found = re.search(r"serving on (http://\S+)", line)
            if found:
                url = found.group(1)
                break
        assert url is not None, log.read_text()
        yield url, process
    finally:
        if process.poll() is None:
            process.terminate()
            process.wait(10)
        if process.stdout is not None:
            process.stdout.close()


def chat_requests(sim: SimServer) -> int:
    return int(sim.stats()["routes"]["chat_stream"]["requests"])


def test_a_chapter_cut_off_by_a_killed_server_is_resumed_after_restart(
    sim: SimServer, tmp_path: Path
) -> None:
    home, log = tmp_path / "home", tmp_path / "server.log"
    with server(home, sim, log) as (url, process), httpx.Client(base_url=url) as client:
        novel_id = client.post(PREFIX, json={"title": "雾港", "premise": "雾夜的来信"}).json()["id"]
        cut = generate(client, novel_id, 0, stop=after_content(3))
        assert client.get(f"{PREFIX}/{novel_id}/chapters/latest").json()["status"] == "generating"
        process.kill()  # SIGKILL: no clean-up of any kind
        process.wait(10)
    started = time.monotonic()

    with server(home, sim, log) as (url, _), httpx.Client(base_url=url) as client:
        resumed = generate(client, novel_id, 0, last_event_id=cut.ids[-1])

        assert resumed.status == 200, resumed.body
        assert resumed.kinds()[0] == "summary"  # the taken-over attempt starts afresh
        assert resumed.kinds()[-1] == "complete"
        assert all(i.startswith("g1-") for i in resumed.ids)
        stored = wait_for_status(client, novel_id, "completed")
        assert stored["generation"] == 1  # resumed, not failed and regenerated
        title, text, options = Received(200, cut.events + resumed.events).chapter()
        assert (title, text, options) == (stored["title"], stored["content"], stored["options"])
        assert chat_requests(sim) == 2
    assert time.monotonic() - started < 30
