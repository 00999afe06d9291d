"""The ``regen`` command line against a real SQLite file."""

from __future__ import annotations

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

from regen.cli import cli
from regen.cli._app import _load_commands

ROOT = Path(__file__).resolve().parents[2]
FLOW = "tests.cli.flows:demo"

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
    result = regen("retry", run_id, "--from", "colour", code=1)
    assert "colour" in result.output
    assert "candidates" in result.output  # the message lists the steps there are


def test_errors_name_what_to_fix(home: Path) -> None:
    result = regen("run", "tests.cli.flows:nope", code=1)
    assert "nope" in result.output
    result = regen("run", FLOW, "-p", "count=two", "-p", "fail_item=1", code=1)
    assert "count" in result.output
    result = regen("run", FLOW, "-p", "count=1", "-p", "fail_item=1", "-p", "colour=red", code=1)
    assert "colour" in result.output
    result = regen("run", FLOW, "-p", "count", code=2)
    assert "NAME=VALUE" in result.output
    result = regen("show", "no-such-run", code=1)
    assert "no-such-run" in result.output
    assert not (home / "regen.db").exists() or as_json("runs") == []


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


def test_gc_reports_what_it_removed(home: Path) -> None:
    regen("run", FLOW, "-p", "count=1", "-p", "fail_item=-1")
    counts = as_json("gc")
    assert set(counts) == {
        "checkpoints_expired",
        "runs_deleted",
        "artifacts_deleted",
        "cache_deleted",
    }


def test_ctrl_c_leaves_a_resumable_run(home: Path) -> None:
    env = {
        **os.environ,
        "REGEN_HOME": str(home),
        "CLI_TEST_ITEM_DELAY": "0.3",
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
    time.sleep(2.5)
    process.send_signal(signal.SIGINT)
    output, _ = process.communicate(timeout=30)
    assert process.returncode == 130, output
    run_id = only_run()["id"]
    assert f"regen retry {run_id}" in output
    detail = as_json("show", run_id)
    assert detail["resumable"] is True
    done_before = detail["steps"][1]["items"]["succeeded"]
    assert done_before > 0
    regen("retry", run_id)
    detail = as_json("show", run_id)
    assert detail["status"] == "succeeded"
    assert detail["steps"][1]["items"]["succeeded"] == 20
