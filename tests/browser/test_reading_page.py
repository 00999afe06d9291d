"""The interactive novel's reading page in a real browser: a chapter streams in, survives
the server being killed and started again, and a failed chapter offers 重新生成."""

from __future__ import annotations

import contextlib
import os
import re
import socket
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from tests.browser.conftest import assert_fits, snap, tab_reaches

from regen.sim import SimServer, run_simulator

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture
def sim() -> Iterator[SimServer]:
    with run_simulator(chunk_delay=0.05) as server:  # a chapter streams for a few seconds
        yield server


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@contextlib.contextmanager
def novel_server(
    home: Path, sim: SimServer, port: int, **settings: str
) -> Iterator[subprocess.Popen[str]]:
    """``python -m examples.novel serve`` on ``port`` (a real process), with ``settings``
    in its environment."""
    env = {
        **os.environ,
        "NOVEL_BASE_URL": sim.openai_base_url,
        "NOVEL_API_KEY": "sk-novel-test-00000002",
        "NOVEL_MODEL": "sim",
        "REGEN_LEASE_TTL_S": "1",  # a killed server's chapter is taken over a second later
        "PYTHONPATH": str(ROOT),
        **settings,
    }
    command = [sys.executable, "-m", "examples.novel", "serve", "--home", str(home)]
    process = subprocess.Popen(
        [*command, "--port", str(port)],
        cwd=ROOT,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
    )
    try:
        assert process.stdout is not None
        for line in process.stdout:
            if re.search(r"serving on http://", line):
                break
        else:
            raise AssertionError("the novel server did not start")
        yield process
    finally:
        if process.poll() is None:
            process.kill()
        process.wait(10)
        if process.stdout is not None:
            process.stdout.close()


def novel_id(page: Any) -> int:
    found = re.search(r"novel=(\d+)", page.url)
    assert found, page.url
    return int(found.group(1))


def test_a_chapter_streams_in_and_survives_a_server_restart(
    tmp_path: Path, sim: SimServer, page: Any
) -> None:
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    with novel_server(tmp_path, sim, port) as first:
        page.goto(url)
        assert tab_reaches(page, "#start")
        page.click("#start")
        page.wait_for_function("document.getElementById('heading').textContent.length > 0")
        page.wait_for_function("document.getElementById('text').textContent.length > 10")
        assert page.locator("#options button").count() == 0  # still streaming
        first.kill()  # mid-chapter: the page's stream drops
    with novel_server(tmp_path, sim, port):
        page.wait_for_selector("#options button", timeout=60_000)
        assert_fits(page)
        chapter = httpx.get(f"{url}/api/v1/novels/{novel_id(page)}/chapters/latest").json()
        assert chapter["status"] == "completed"
        # The text on the page is the chapter, whole and without a repeated piece.
        assert page.text_content("#text") == chapter["content"]
        assert page.text_content("#heading") == chapter["title"]
        options = page.locator("#options button").all_text_contents()
        assert options == [o["text"] for o in chapter["options"]]
        # Choosing an option leads to the next chapter, which streams in the same way.
        page.locator("#options button").first.click()
        page.wait_for_function(
            "(first) => document.getElementById('heading').textContent !== first"
            " && document.querySelectorAll('#options button').length > 0",
            arg=chapter["title"],
            timeout=60_000,
        )
        second = httpx.get(f"{url}/api/v1/novels/{novel_id(page)}/chapters/latest").json()
        assert second["chapter_number"] == 2
        assert page.text_content("#text") == second["content"]


def test_a_failed_chapter_shows_the_seeds_view_and_regenerates(
    tmp_path: Path, sim: SimServer, page: Any
) -> None:
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    # The first chapter's request is refused (a bad key: not retried); the next one works.
    sim.script({"route": "chat_stream", "steps": ["auth"]})
    with novel_server(tmp_path, sim, port):
        page.goto(url)
        page.click("#start")
        page.wait_for_selector(".generation-failed")
        failed = page.locator(".generation-failed")
        assert failed.locator(".error-icon").is_visible()
        assert failed.locator("h3").text_content() == "章节生成失败"
        assert failed.locator("p").text_content() == "生成过程中遇到了问题,请重试"
        assert page.locator("#back").text_content() == "返回上一章"
        assert tab_reaches(page, "#retry")
        assert_fits(page)
        snap(page, "reading-page-failed")
        page.click("#retry")
        page.wait_for_selector("#options button", timeout=60_000)
        chapter = httpx.get(f"{url}/api/v1/novels/{novel_id(page)}/chapters/latest").json()
        assert chapter["status"] == "completed"
        assert page.text_content("#text") == chapter["content"]
        assert page.locator(".generation-failed").count() == 0


def test_a_chapter_failing_mid_stream_leaves_only_the_failed_view(
    tmp_path: Path, sim: SimServer, page: Any
) -> None:
    port = free_port()
    # Half the chapter streams in, then the connection drops; one attempt only: failed.
    sim.script({"route": "chat_stream", "steps": ["stream_cut"]})
    with novel_server(tmp_path, sim, port, NOVEL_CHAT_MAX_ATTEMPTS="1"):
        page.goto(f"http://127.0.0.1:{port}")
        page.click("#start")
        page.wait_for_function("document.querySelector('#text').textContent.length > 0")
        page.wait_for_selector(".generation-failed", timeout=60_000)
        assert page.text_content("#text") == ""  # the seed's failed view, nothing above it
        assert page.text_content("#heading") == ""
        assert page.locator("#options button").count() == 0


def test_back_from_a_failed_chapter_then_another_option_writes_it_from_that_one(
    tmp_path: Path, sim: SimServer, page: Any
) -> None:
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    # Chapter 1 is written; chapter 2's request is refused (a bad key: not retried).
    sim.script({"route": "chat_stream", "steps": ["ok", "auth"]})
    with novel_server(tmp_path, sim, port):
        page.goto(url)
        page.click("#start")
        page.wait_for_selector("#options button", timeout=60_000)
        page.locator("#options button").first.click()
        page.wait_for_selector(".generation-failed", timeout=60_000)
        page.click("#back")  # 返回上一章: chapter 1 again, with its options
        page.wait_for_selector("#options button")
        first = httpx.get(f"{url}/api/v1/novels/{novel_id(page)}/chapters/1").json()
        assert page.text_content("#text") == first["content"]
        page.locator("#options button").nth(1).click()  # another option: chapter 2 from it
        page.wait_for_function(
            "document.querySelectorAll('#options button').length > 0"
            " && document.getElementById('heading').textContent.includes('2')",
            timeout=60_000,
        )
        second = httpx.get(f"{url}/api/v1/novels/{novel_id(page)}/chapters/2").json()
        assert (second["status"], second["generation"]) == ("completed", 2)
        assert page.text_content("#text") == second["content"]
        assert page.locator(".generation-failed").count() == 0
        chosen = httpx.get(f"{url}/api/v1/novels/{novel_id(page)}/chapters/1").json()
        assert chosen["chosen_option_id"] == first["options"][1]["id"]
