"""The ``regen`` command line against a real SQLite file."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner, Result

from regen.cli import _runs, cli
from regen.cli._app import _load_commands
from regen.engine import Engine

ROOT = Path(__file__).resolve().parents[2]
FLOW = "tests.cli.flows:demo"
ART = "tests.cli.flows:art"

_load_commands()


@pytest.fixture
def home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("REGEN_HOME", str(tmp_path / "home"))
    monkeypatch.delenv("REGEN_DATABASE_URL", raising=False)
    monkeypatch.delenv("CLI_TEST_FAIL_PUBLISH", raising=False)
    return tmp_path / "home"


def regen(*args: str, code: int = 0) -> Result:
    result = CliRunner().invoke(cli, list(args), catch_exceptions=False)
    assert result.exit_code == code, result.output
    return result


def as_json(*args: str) -> Any:
    return json.loads(regen(*args, "--json").stdout)


def only_run() -> dict[str, Any]:
    runs = as_json("runs")
    assert len(runs) == 1
    return runs[0]  # type: ignore[no-any-return]


def test_run_shows_progress_and_records_the_run(home: Path) -> None:
    result = regen("run", FLOW, "-p", "count=2", "-p", "fail_item=1")
    assert "gave up after 2 attempts" in result.output
    assert "succeeded" in result.output
    run = only_run()
    assert run["status"] == "succeeded"
    assert (home / "regen.db").exists()


def test_show_json_carries_the_task_record(home: Path) -> None:
    regen("run", FLOW, "-p", "count=2", "-p", "fail_item=1")
    detail = as_json("show", only_run()["id"])
    assert [s["name"] for s in detail["steps"]] == ["candidates", "illustrate", "publish"]
    assert detail["resumable"] is False
    assert detail["last_successful_step"] == "publish"
    assert detail["steps"][1]["items"] == {
        "pending": 0,
        "running": 0,
        "succeeded": 2,
        "given_up": 1,
        "skipped": 3,
    }
    given_up = [i for i in detail["items"]["illustrate"] if i["status"] == "given_up"]
    assert given_up[0]["idx"] == 1
    assert len(given_up[0]["attempts"]) == 2
    assert "candidates" in detail["checkpoint"]["step_outputs"]


def test_events_json_is_the_ordered_log(home: Path) -> None:
    regen("run", FLOW, "-p", "count=1", "-p", "fail_item=-1")
    events = as_json("events", only_run()["id"])
    assert [e["seq"] for e in events] == list(range(1, len(events) + 1))
    assert events[0]["type"] == "run.queued"
    assert events[-1]["type"] == "run.succeeded"


def test_events_json_pages_through_the_whole_log(
    home: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    regen("run", FLOW, "-p", "count=2", "-p", "fail_item=1")
    run_id = only_run()["id"]
    whole = as_json("events", run_id)
    monkeypatch.setattr(_runs, "EVENT_PAGE", 3)  # many pages for this log
    assert len(whole) > 3 * 5
    assert as_json("events", run_id) == whole
    assert as_json("events", run_id, "--after", "7") == whole[7:]
    assert as_json("events", run_id, "--after", str(len(whole))) == []


def _regen_process(*args: str, **env: str) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-m", "regen.cli", *args],
        cwd=ROOT,
        env={**os.environ, "PYTHONPATH": str(ROOT), **env},
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def test_events_follow_prints_json_lines_until_the_run_ends(home: Path) -> None:
    regen("run", FLOW, "-p", "count=2", "-p", "fail_item=1", "--queue")
    run_id = only_run()["id"]
    follower = _regen_process("events", run_id, "--follow", "--json")
    try:
        assert follower.stdout is not None
        first = follower.stdout.readline()  # printed at once: the follower now waits
        assert json.loads(first)["type"] == "run.queued"
        assert follower.poll() is None  # the run is queued: following goes on
        regen("worker", "--flow", FLOW, "--max-runs", "1", "--poll", "0.05")
        rest, errors = follower.communicate(timeout=30)  # ends by itself with the run
    finally:
        if follower.poll() is None:
            follower.kill()
            follower.communicate()
    assert follower.returncode == 0, errors
    lines = [first, *rest.splitlines()]
    events = [json.loads(line) for line in lines]  # JSON Lines: one event per line
    assert [e["seq"] for e in events] == list(range(1, len(events) + 1))
    assert events[-1]["type"] == "run.succeeded"
    assert "item.given_up" in [e["type"] for e in events]
    assert events == as_json("events", run_id)


def test_events_follow_of_a_finished_run_prints_its_log_and_ends(home: Path) -> None:
    regen("run", FLOW, "-p", "count=1", "-p", "fail_item=-1")
    run_id = only_run()["id"]
    lines = regen("events", run_id, "--follow", "--json").stdout.splitlines()
    assert [json.loads(line) for line in lines] == as_json("events", run_id)
    text = regen("events", run_id, "--follow").stdout
    assert "run.queued" in text
    assert "run.succeeded" in text


def test_cancel_of_a_queued_run_skips_its_steps(home: Path) -> None:
    regen("run", FLOW, "-p", "count=1", "-p", "fail_item=-1", "--queue")
    run_id = only_run()["id"]
    assert regen("cancel", run_id).output.strip() == f"run {run_id}: cancelled"
    detail = as_json("show", run_id)
    assert detail["status"] == "cancelled"
    assert [s["status"] for s in detail["steps"]] == ["skipped"] * 3
    events = as_json("events", run_id)
    assert [(e["type"], e["data"].get("step")) for e in events] == [
        ("run.queued", None),
        ("step.skipped", "candidates"),
        ("step.skipped", "illustrate"),
        ("step.skipped", "publish"),
        ("run.cancelled", None),
    ]
    again = regen("cancel", run_id, code=2)
    assert "already finished" in again.output
    result = regen("cancel", "no-such-run", code=2)
    assert "no-such-run" in result.output


def _wait_for_event(home: Path, run_id: str, kind: str) -> None:
    """Follow the run's log until an event of ``kind`` is written (by another process)."""

    async def wait() -> None:
        with Engine(home=home) as engine:
            async for event in engine.events(run_id, follow=True, poll=0.05):
                if event.type == kind:
                    return
        raise AssertionError(f"run {run_id} ended without a {kind} event")

    asyncio.run(asyncio.wait_for(wait(), 30))


def test_cancel_stops_a_running_run_at_its_next_safe_point(home: Path) -> None:
    regen("run", FLOW, "-p", "count=20", "-p", "fail_item=-1", "--queue")
    run_id = only_run()["id"]
    worker = _regen_process(
        "worker", "--flow", FLOW, "--max-runs", "1", "--poll", "0.05", CLI_TEST_ITEM_DELAY="0.2"
    )
    try:
        _wait_for_event(home, run_id, "item.succeeded")
        result = regen("cancel", run_id)
        assert result.output.strip() == (
            f"run {run_id}: running (cancel requested: it stops at its next safe point; "
            "a last step already running finishes)"
        )
        _, errors = worker.communicate(timeout=30)  # the worker's one run has ended
    finally:
        if worker.poll() is None:
            worker.kill()
            worker.communicate()
    assert worker.returncode == 0, errors
    detail = as_json("show", run_id)
    assert detail["status"] == "cancelled"
    assert [s["status"] for s in detail["steps"]] == ["succeeded", "failed", "skipped"]
    assert 0 < detail["steps"][1]["items"]["succeeded"] < 20  # stopped part-way
    events = as_json("events", run_id)
    assert [e["type"] for e in events[-2:]] == ["step.skipped", "run.cancelled"]
    assert events[-2]["data"] == {"step": "publish"}


def test_a_failed_run_is_retried_from_its_failed_step(
    home: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("CLI_TEST_FAIL_PUBLISH", "1")
    result = regen("run", FLOW, "-p", "count=2", "-p", "fail_item=-1", code=1)
    run_id = only_run()["id"]
    assert f"regen retry {run_id}" in result.output
    detail = as_json("show", run_id)
    assert (detail["resumable"], detail["failed_step"]) == (True, "publish")
    seen = len(as_json("events", run_id))

    monkeypatch.delenv("CLI_TEST_FAIL_PUBLISH")
    regen("retry", run_id)
    new = as_json("events", run_id, "--after", str(seen))
    assert not [e for e in new if e["type"] == "item.started"]  # succeeded items were kept
    assert as_json("show", run_id)["status"] == "succeeded"
    assert as_json("show", run_id)["retry_count"] == 1


def test_retry_from_a_named_step_redoes_it_and_what_follows(home: Path) -> None:
    regen("run", FLOW, "-p", "count=2", "-p", "fail_item=-1")
    run_id = only_run()["id"]
    seen = len(as_json("events", run_id))
    regen("retry", run_id, "--from", "illustrate")
    new = as_json("events", run_id, "--after", str(seen))
    redone = [e["data"]["step"] for e in new if e["type"] == "step.started"]
    assert redone == ["illustrate", "publish"]
    assert as_json("show", run_id)["status"] == "succeeded"
    result = regen("retry", run_id, "--from", "colour", code=2)
    assert "colour" in result.output
    assert "candidates" in result.output  # the message lists the steps there are


def test_errors_name_what_to_fix(home: Path) -> None:
    result = regen("run", "tests.cli.flows:nope", code=2)
    assert "nope" in result.output
    # Params that do not fit the flow are a usage error, like a malformed -p.
    result = regen("run", FLOW, "-p", "count=two", "-p", "fail_item=1", code=2)
    assert "count" in result.output
    result = regen("run", FLOW, "-p", "count=1", "-p", "fail_item=1", "-p", "colour=red", code=2)
    assert "colour" in result.output
    result = regen("run", FLOW, "-p", "count", code=2)
    assert "NAME=VALUE" in result.output
    result = regen("show", "no-such-run", code=2)
    assert "no-such-run" in result.output
    assert not (home / "regen.db").exists() or as_json("runs") == []


@pytest.mark.parametrize(
    ("args", "option"),
    [
        (("serve", "--port", "99999"), "--port"),
        (("serve", "--concurrency", "0"), "--concurrency"),
        (("worker", "--concurrency", "0"), "--concurrency"),
        (("worker", "--poll", "0"), "--poll"),
        (("worker", "--max-runs", "-1"), "--max-runs"),
        (("runs", "--limit", "-3"), "--limit"),
        (("show", "abcd", "--items", "-1"), "--items"),
        (("events", "abcd", "--after", "-5"), "--after"),
    ],
)
def test_a_number_out_of_range_is_a_usage_error_naming_the_option(
    home: Path, args: tuple[str, ...], option: str
) -> None:
    result = regen(*args, code=2)
    assert f"Invalid value for '{option}'" in result.output
    assert not (home / "regen.db").exists()


@pytest.mark.parametrize(
    ("variable", "value", "args", "option"),
    [
        ("REGEN_WORKER_CONCURRENCY", "0", ("worker",), "--concurrency"),  # the automatic name
        ("REGEN_HEALTH_TIMEOUT_S", "0", ("health",), "--timeout"),  # a name declared
        ("REGEN_SERVE_PORT", "abc", ("serve",), "--port"),
        ("REGEN_SIM_FAULTS", "hang=2", ("sim",), "--faults"),  # refused by regen, not click
    ],
)
def test_a_value_refused_from_the_environment_names_the_variable(
    home: Path,
    monkeypatch: pytest.MonkeyPatch,
    variable: str,
    value: str,
    args: tuple[str, ...],
    option: str,
) -> None:
    monkeypatch.setenv(variable, value)
    result = regen(*args, code=2)
    assert f"Invalid value for {variable} (read as '{option}')" in result.output
    typed = regen(*args, option, value, code=2)  # typed, it is the option that is named
    assert f"Invalid value for '{option}'" in typed.output


def test_a_queued_run_is_cancelled_or_run_by_a_worker(home: Path) -> None:
    regen("run", FLOW, "-p", "count=1", "-p", "fail_item=-1", "--queue")
    first = only_run()
    assert first["status"] == "queued"
    regen("cancel", first["id"])
    assert as_json("show", first["id"])["status"] == "cancelled"

    regen("run", FLOW, "-p", "count=1", "-p", "fail_item=-1", "--queue")
    regen("worker", "--flow", FLOW, "--max-runs", "1", "--poll", "0.05")
    statuses = sorted(r["status"] for r in as_json("runs"))
    assert statuses == ["cancelled", "succeeded"]


def test_a_business_key_gives_one_run(home: Path) -> None:
    regen("run", FLOW, "-p", "count=1", "-p", "fail_item=-1", "--key", "2026-11-23")
    result = regen("run", FLOW, "-p", "count=1", "-p", "fail_item=-1", "--key", "2026-11-23")
    assert "found" in result.output
    assert len(as_json("runs")) == 1


def test_gc_reports_what_it_removed(home: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    regen("run", ART, "-p", "name=kept")
    monkeypatch.setenv("CLI_TEST_FAIL_PUBLISH", "1")
    regen("run", FLOW, "-p", "count=1", "-p", "fail_item=-1", code=1)
    failed = next(r["id"] for r in as_json("runs") if r["status"] == "failed")
    assert as_json("show", failed)["resumable"] is True
    nothing = {
        "checkpoints_expired": 0,
        "runs_deleted": 0,
        "artifacts_deleted": 0,
        "health_checks_deleted": 0,
        "counts_deleted": 0,
    }
    assert as_json("gc") == {**nothing, "cache_deleted": 0}  # everything is recent

    monkeypatch.setenv("REGEN_CHECKPOINT_RETENTION_HOURS", "0")
    assert as_json("gc") == {**nothing, "checkpoints_expired": 1, "cache_deleted": 0}
    assert as_json("show", failed)["resumable"] is False
    assert len(as_json("runs")) == 2  # finished runs are kept longer than checkpoints
    assert as_json("gc")["checkpoints_expired"] == 0  # expired once

    monkeypatch.setenv("REGEN_RUN_RETENTION_DAYS", "0")
    artifacts = [p for p in (home / "artifacts").rglob("*") if p.is_file()]
    assert len(artifacts) == 1
    assert as_json("gc") == {
        **nothing,
        "runs_deleted": 2,
        "artifacts_deleted": 1,
        "cache_deleted": 0,
    }
    assert as_json("runs") == []
    assert not artifacts[0].exists()
    result = regen("gc")
    assert "runs deleted: 0" in result.output


@pytest.mark.parametrize(
    ("variable", "value", "command"),
    [
        ("REGEN_CHECKPOINT_RETENTION_HOURS", "a day", "runs"),
        ("MODEL_HEALTH_CHECK_TIMEOUT", "abc", "health"),  # the seed's name, read by regen
    ],
)
def test_a_bad_setting_is_a_usage_error_naming_the_variable(
    home: Path, monkeypatch: pytest.MonkeyPatch, variable: str, value: str, command: str
) -> None:
    monkeypatch.setenv(variable, value)
    result = regen(command, code=2)
    assert f"{variable}={value!r}: expected a number" in result.output


def test_ctrl_c_leaves_a_resumable_run(home: Path) -> None:
    env = {
        **os.environ,
        "REGEN_HOME": str(home),
        "CLI_TEST_HOLD_FROM": "2",  # items 0 and 1 succeed, the next ones wait for Ctrl-C
        "PYTHONPATH": str(ROOT),
    }
    process = subprocess.Popen(
        [sys.executable, "-m", "regen.cli", "run", FLOW, "-p", "count=20", "-p", "fail_item=-1"],
        cwd=ROOT,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    assert process.stdout is not None
    started = process.stdout.readline()  # "cli-demo: run ID started"
    assert started.endswith(" started\n"), started
    run_id = started.split()[2]
    deadline = time.monotonic() + 30
    while as_json("show", run_id)["steps"][1]["items"]["succeeded"] < 2:
        assert time.monotonic() < deadline, "items 0 and 1 did not succeed in 30 s"
        time.sleep(0.05)
    process.send_signal(signal.SIGINT)
    output, _ = process.communicate(timeout=30)
    assert process.returncode == 130, output
    assert only_run()["id"] == run_id
    assert f"regen retry {run_id}" in output
    detail = as_json("show", run_id)
    assert detail["resumable"] is True
    assert detail["steps"][1]["items"]["succeeded"] == 2
    # The step it was in is recorded failed, not left running: a retry resumes there.
    assert detail["steps"][1]["status"] == "failed"
    assert detail["steps"][1]["error"]["type"] == "Interrupted"
    assert detail["failed_step"] == detail["steps"][1]["name"]
    regen("retry", run_id)
    detail = as_json("show", run_id)
    assert detail["status"] == "succeeded"
    assert detail["steps"][1]["items"]["succeeded"] == 20


def test_the_regen_command_imports_flows_from_the_current_directory(tmp_path: Path) -> None:
    """As under ``python -m``: ``regen run MODULE:FLOW`` finds ``./MODULE.py``; and the
    flow's resources see the ``--home`` given on the command line as ``REGEN_HOME``."""
    (tmp_path / "myflows.py").write_text(
        "import os, pathlib\n"
        "from regen.engine import Flow\n"
        "flow = Flow('local-flow', resources=lambda params: os.environ['REGEN_HOME'])\n"
        "@flow.step()\n"
        "def hello(ctx):\n"
        "    pathlib.Path('seen-home').write_text(ctx.resources)\n"
        "    return 'hello'\n"
    )
    command = Path(sys.executable).with_name("regen")
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "REGEN_DATABASE_URL")}
    env["REGEN_HOME"] = str(tmp_path / "elsewhere")
    done = subprocess.run(
        [str(command), "--home", str(tmp_path / "home"), "run", "myflows:flow"],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert "local-flow" in done.stdout
    assert "succeeded" in done.stdout
    assert (tmp_path / "home" / "regen.db").exists()
    assert (tmp_path / "seen-home").read_text() == str(tmp_path / "home")
