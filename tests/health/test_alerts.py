"""Alerts: settings from the environment and regen.toml; a watcher that announces each
crossing once, to a real command and a real webhook receiver on loopback."""

from __future__ import annotations

import asyncio
import json
import logging
import sys
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any, ClassVar

import pytest

from regen.engine import Engine
from regen.foundation import ConfigError, remember_secret
from regen.health import Alert, AlertSettings, AlertWatcher
from regen.providers import MemoryState

NOW = 1_000_000.0


class Clock:
    def __init__(self) -> None:
        self.now = NOW

    def __call__(self) -> float:
        return self.now


def _settings(**values: Any) -> AlertSettings:
    base: dict[str, Any] = {"retry_rate": 0.5, "window_s": 300, "min_attempts": 10}
    return AlertSettings(**{**base, **values})


async def _traffic(state: MemoryState, at: float, attempts: int, retries: int) -> None:
    await state.count(
        {("dashscope", "", "attempts"): attempts, ("dashscope", "timeout", "retries"): retries},
        at,
    )


async def _open(state: MemoryState, provider: str = "dashscope") -> None:
    await state.update(f"breaker:{provider}", lambda _: ({"state": "open"}, None))


async def _close(state: MemoryState, provider: str = "dashscope") -> None:
    await state.update(f"breaker:{provider}", lambda _: ({"state": "closed"}, None))


# --- settings ---------------------------------------------------------------------------------


def test_settings_come_from_regen_toml_and_the_environment_wins(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    (tmp_path / "regen.toml").write_text(
        '[alerts]\ncommand = "notify"\nretry_rate = 0.3\nwindow_s = 60\nbreaker_open = false\n'
    )
    settings = AlertSettings.load(environ={"REGEN_ALERT_RETRY_RATE": "0.8"})
    assert (settings.command, settings.retry_rate, settings.window_s) == ("notify", 0.8, 60.0)
    assert (settings.breaker_open, settings.enabled) == (False, True)
    with pytest.raises(ConfigError, match=r"none\.toml does not exist"):
        AlertSettings.load(tmp_path / "none.toml", {})


def test_without_a_command_or_webhook_alerts_are_off(tmp_path: Path) -> None:
    path = tmp_path / "empty.toml"
    path.write_text("")
    assert not AlertSettings.load(path, environ={}).enabled


@pytest.mark.parametrize(
    ("toml", "env", "message"),
    [
        ("", {"REGEN_ALERT_RETRY_RATE": "1.5"}, "REGEN_ALERT_RETRY_RATE=1.5: expected a fraction"),
        ("", {"REGEN_ALERT_WINDOW_S": "soon"}, "REGEN_ALERT_WINDOW_S"),
        ("", {"REGEN_ALERT_WEBHOOK": "ftp://x.example/h"}, "expected an http:// or https://"),
        ("", {"REGEN_ALERT_MIN_ATTEMPTS": "0"}, "REGEN_ALERT_MIN_ATTEMPTS"),
        ("[alerts]\nretry = 0.5\n", {}, "unknown key(s) ['retry'] in [alerts]"),
        ('[alerts]\nwindow_s = "5m"\n', {}, "window_s = '5m': expected a number"),
        ("[alerts]\nbreaker_open = 1\n", {}, "expected true or false"),
        # A value of the file is named as the file's, not as a variable nobody set.
        ("[alerts]\nretry_rate = 2\n", {}, "regen.toml: [alerts] retry_rate=2.0: expected a"),
        ("[alerts]\nwindow_s = 0\n", {}, "[alerts] window_s=0.0: expected a number of seconds"),
        # Refused at start-up, not when the first alert comes and cannot be sent.
        ("", {"REGEN_ALERT_COMMAND": "page --team 'ops"}, "cannot be split like a shell"),
        ('[alerts]\ncommand = "a \\"b"\n', {}, "[alerts] command='a \"b'"),
    ],
)
def test_bad_settings_are_refused_naming_what_to_fix(
    tmp_path: Path, toml: str, env: dict[str, str], message: str
) -> None:
    path = tmp_path / "regen.toml"
    path.write_text(toml)
    with pytest.raises(ConfigError) as caught:
        AlertSettings.load(path, environ=env)
    assert message in str(caught.value)


# --- the watcher ------------------------------------------------------------------------------


async def test_a_high_retry_rate_is_announced_once_then_its_recovery_once() -> None:
    state, clock, sent = MemoryState(), Clock(), []
    watcher = AlertWatcher(state, _settings(), send=sent.append, clock=clock)
    await _traffic(state, NOW - 60, attempts=20, retries=6)
    assert await watcher.check() == []  # 30 %: under the threshold
    await _traffic(state, NOW - 30, attempts=10, retries=12)  # 18 of 30: 60 %
    (alert,) = await watcher.check()
    assert (alert.condition, alert.status, alert.provider) == ("retry_rate", "firing", "dashscope")
    assert alert.details["retry_rate"] == pytest.approx(0.6)
    assert "60% of attempts retried over the last 300 s" in alert.message
    assert await watcher.check() == []  # still high: not announced again
    clock.now += 400  # that traffic has left the window; healthy traffic since
    await _traffic(state, clock.now - 10, attempts=20, retries=1)
    (back,) = await watcher.check()
    assert (back.condition, back.status) == ("retry_rate", "resolved")
    assert await watcher.check() == []
    assert len(sent) == 2


async def test_too_few_attempts_to_judge_change_nothing() -> None:
    state, clock, sent = MemoryState(), Clock(), []
    watcher = AlertWatcher(state, _settings(), send=sent.append, clock=clock)
    await _traffic(state, NOW, attempts=3, retries=3)
    assert await watcher.check() == []  # 100 %, but 3 attempts say too little
    await _traffic(state, NOW, attempts=10, retries=10)
    assert [a.status for a in await watcher.check()] == ["firing"]
    clock.now += 290  # most of that traffic leaves the window; a trickle is left
    await _traffic(state, clock.now - 5, attempts=2, retries=0)
    assert await watcher.check() == []  # too little to say it is over
    clock.now += 400  # nothing left in the window: over
    assert [a.status for a in await watcher.check()] == ["resolved"]


async def test_a_breaker_opening_and_closing_are_announced_once_each() -> None:
    state, sent = MemoryState(), []
    watcher = AlertWatcher(state, _settings(), send=sent.append, clock=Clock())
    await _open(state)
    (opened,) = await watcher.check()
    assert (opened.condition, opened.status, opened.details["breaker"]) == (
        "breaker_open",
        "firing",
        "open",
    )
    assert await watcher.check() == []
    await _close(state)
    (closed,) = await watcher.check()
    assert (closed.condition, closed.status) == ("breaker_open", "resolved")
    quiet = AlertWatcher(state, _settings(breaker_open=False), send=sent.append, clock=Clock())
    await _open(state)
    assert await quiet.check() == []


async def test_of_two_watchers_on_one_database_only_one_announces(
    tmp_path: Path,
) -> None:
    url = f"sqlite:///{tmp_path / 'regen.db'}"
    first, second = Engine(url, home=tmp_path), Engine(url, home=tmp_path)
    try:
        sent: list[Alert] = []
        watchers = [
            AlertWatcher(e.provider_state, _settings(), send=sent.append, clock=Clock())
            for e in (first, second)
        ]
        await first.provider_state.update("breaker:openai", lambda _: ({"state": "open"}, None))
        assert len(await watchers[0].check()) == 1
        assert await watchers[1].check() == []
        assert [a.status for a in sent] == ["firing"]
    finally:
        await first.aclose()
        await second.aclose()


# --- where alerts go --------------------------------------------------------------------------

_WRITER = """
import json, os, sys
alert = json.load(sys.stdin)
with open(sys.argv[1], "a") as out:
    out.write(json.dumps({"stdin": alert, "status": os.environ["REGEN_ALERT_STATUS"],
                          "provider": os.environ["REGEN_ALERT_PROVIDER"]}) + "\\n")
"""


async def test_a_command_gets_the_alert_on_stdin_and_in_its_environment(tmp_path: Path) -> None:
    script, out = tmp_path / "write.py", tmp_path / "alerts.jsonl"
    script.write_text(_WRITER)
    command = f"{sys.executable} {script} {out}"
    state = MemoryState()
    watcher = AlertWatcher(state, _settings(command=command), clock=Clock())
    await _open(state, "wanx")
    await watcher.check()
    await _close(state, "wanx")
    await watcher.check()
    lines = [json.loads(line) for line in out.read_text().splitlines()]
    assert [(x["status"], x["provider"]) for x in lines] == [
        ("firing", "wanx"),
        ("resolved", "wanx"),
    ]
    assert lines[0]["stdin"]["alert"] == "breaker_open"
    assert lines[0]["stdin"]["message"].startswith("wanx: circuit breaker open")


async def test_a_failing_or_hanging_command_is_logged_and_the_watcher_goes_on(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    hang = f"{sys.executable} -c 'import time; time.sleep(30)'"
    state = MemoryState()
    await _open(state)
    for command, said in [
        (hang, "still running after 0.5 s; killed"),
        (f"{sys.executable} -c 'raise SystemExit(3)'", "exit status 3"),
        (str(tmp_path / "missing-program"), "No such file"),
    ]:
        caplog.clear()
        await _close(state)
        watcher = AlertWatcher(state, _settings(command=command, timeout_s=0.5), clock=Clock())
        await watcher.check()  # resolves what the last one announced
        await _open(state)
        with caplog.at_level(logging.WARNING, logger="regen.health"):
            (alert,) = await watcher.check()
        assert alert.status == "firing"
        failures = [
            r for r in caplog.records if r.getMessage() == "regen: the alert command failed"
        ]
        assert failures
        assert said in failures[-1].error  # type: ignore[attr-defined]


class _Receiver(BaseHTTPRequestHandler):
    received: ClassVar[list[tuple[str, dict[str, Any]]]] = []

    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers["Content-Length"]))
        _Receiver.received.append((self.path, json.loads(body)))
        self.send_response(204)
        self.end_headers()

    def log_message(self, *args: Any) -> None:
        pass


@pytest.fixture
def receiver() -> Iterator[str]:
    _Receiver.received = []
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Receiver)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()


async def test_a_webhook_receives_each_alert_as_json_with_secrets_masked(receiver: str) -> None:
    secret = "sk-alerts-0123456789abcdef"
    remember_secret(secret)
    state = MemoryState()
    webhook = f"{receiver}/hooks/T0KEN"
    watcher = AlertWatcher(state, _settings(webhook=webhook), clock=Clock())
    await state.count(
        {(f"leaky-{secret}", "", "attempts"): 20, (f"leaky-{secret}", "timeout", "retries"): 20},
        NOW,
    )
    assert len(await watcher.check()) == 1
    ((path, body),) = _Receiver.received
    assert path == "/hooks/T0KEN"
    assert (body["alert"], body["status"], body["retry_rate"]) == ("retry_rate", "firing", 1.0)
    assert secret not in json.dumps(body)
    assert body["provider"].startswith("leaky-sk-")


async def test_an_unreachable_webhook_is_logged_by_host_only(
    caplog: pytest.LogCaptureFixture,
) -> None:
    state = MemoryState()
    await _open(state)
    watcher = AlertWatcher(
        state, _settings(webhook="http://127.0.0.1:9/hooks/SECRET-PATH", timeout_s=1), clock=Clock()
    )
    with caplog.at_level(logging.WARNING, logger="regen.health"):
        (alert,) = await watcher.check()
    assert alert.status == "firing"
    (failure,) = [r for r in caplog.records if "webhook failed" in r.getMessage()]
    assert failure.target == "127.0.0.1"  # type: ignore[attr-defined]
    assert "SECRET-PATH" not in caplog.text


async def test_the_watcher_runs_in_the_background_until_its_block_ends() -> None:
    state, sent = MemoryState(), []
    await _open(state)
    got = asyncio.Event()

    def send(alert: Alert) -> None:
        sent.append(alert)
        got.set()

    async with AlertWatcher(state, _settings(interval_s=0.05), send=send, clock=Clock()):
        await asyncio.wait_for(got.wait(), 10)
    assert [a.condition for a in sent] == ["breaker_open"]
