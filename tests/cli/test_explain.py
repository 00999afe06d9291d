"""A failure explains itself: what ``regen run``, ``regen show``, ``regen runs`` and
``regen worker`` print when a run fails, in real ``regen`` processes on a real SQLite file."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
import uuid
from pathlib import Path
from typing import Any

import pytest

from regen.engine import Engine

ROOT = Path(__file__).resolve().parents[2]
FLOWS = ROOT / "tests" / "cli" / "flows.py"


def _env(home: Path, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("REGEN_", "CLI_TEST_"))}
    env.update(PYTHONPATH=str(ROOT), REGEN_HOME=str(home), LC_ALL="C.UTF-8", COLUMNS="200")
    env.update(extra)
    return env


def regen(home: Path, *args: str, code: int = 0, **env: str) -> str:
    """``regen ARGS`` in a process of its own; its stdout and stderr, after checking its
    exit status."""
    done = subprocess.run(
        [sys.executable, "-m", "regen.cli", *args],
        cwd=ROOT,
        env=_env(home, **env),
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    output = done.stdout + done.stderr
    assert done.returncode == code, output
    return output


def strict(text: str) -> Any:
    """JSON parsed as a strict parser would (no NaN, Infinity or -Infinity)."""

    def refuse(token: str) -> Any:
        raise AssertionError(f"not strict JSON: {token}")

    return json.loads(text, parse_constant=refuse)


def runs(home: Path) -> list[dict[str, Any]]:
    return strict(regen(home, "runs", "--json"))  # type: ignore[no-any-return]


def _line_of(text: str) -> int:
    source = FLOWS.read_text().splitlines()
    return next(n for n, line in enumerate(source, 1) if text in line)


def test_a_bug_shows_its_type_message_and_line(tmp_path: Path) -> None:
    output = regen(tmp_path, "run", "tests.cli.flows:buggy", code=1)
    assert "failed at step 'divide': unknown: division by zero" in output
    assert "Traceback (most recent call last):" in output
    assert f'flows.py", line {_line_of("return 1 / 0")}, in divide' in output
    assert "ZeroDivisionError: division by zero" in output
    # A retry alone would fail again: the hint says to fix the bug first.
    assert "a bug in the step's code" in output
    assert "fix it, then regen retry" in output

    (run,) = runs(tmp_path)
    shown = regen(tmp_path, "show", run["id"][:6], code=0)
    assert f"line {_line_of('return 1 / 0')}, in divide" in shown
    assert "ZeroDivisionError: division by zero" in shown


def test_a_config_error_names_its_variable(tmp_path: Path) -> None:
    output = regen(
        tmp_path, "run", "tests.cli.flows:configured", code=1, CLI_TEST_IMAGE_MAX_ATTEMPTS="abc"
    )
    assert "failed before its first step" in output
    assert "config:" in output
    assert "CLI_TEST_IMAGE_MAX_ATTEMPTS" in output
    assert "a retry alone would fail again: fix the configuration" in output


def test_an_automatic_retry_says_when_it_runs(tmp_path: Path) -> None:
    output = regen(tmp_path, "run", "tests.cli.flows:flaky", code=1)
    due = re.search(r"retry 1/1 at (\d\d:\d\d:\d\d) \(in \d+ s\)", output)
    assert due, output
    # The second failure is final: its reason, the retries used, what to type.
    assert "failed at step 'fetch': timeout: the provider did not answer in 5 s" in output
    assert "retry from the failed step: regen retry" in output
    assert "render (step, skipped)" in output  # a step that never ran is closed
    (run,) = runs(tmp_path)
    assert run["auto_retries"] == 1
    assert "1 of 1 automatic retries used" in regen(tmp_path, "show", run["id"])


def test_ctrl_c_while_waiting_leaves_the_run_due_for_its_retry(tmp_path: Path) -> None:
    process = subprocess.Popen(
        [sys.executable, "-m", "regen.cli", "run", "tests.cli.flows:flaky"],
        cwd=ROOT,
        env=_env(tmp_path, CLI_TEST_RETRY_DELAY="60"),
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    assert process.stdout is not None
    seen = []
    for line in process.stdout:  # waits on the process's own output, not on a clock
        seen.append(line)
        if "retry 1/1 at" in line:
            break
    process.send_signal(signal.SIGINT)
    rest, _ = process.communicate(timeout=30)
    output = "".join(seen) + rest
    assert process.returncode == 130, output
    assert "stays queued for automatic retry 1/1 at" in output
    (run,) = runs(tmp_path)
    assert run["status"] == "failed"
    assert run["retry_at"] is not None


@pytest.fixture
def three_runs(tmp_path: Path) -> list[str]:
    for n in range(3):
        regen(tmp_path, "run", "tests.cli.flows:dated", "-p", f"date=2026-01-0{n + 1}")
    return [r["id"] for r in runs(tmp_path)]


def test_a_run_id_prefix_resolves(tmp_path: Path, three_runs: list[str]) -> None:
    run_id = three_runs[0]
    shown = strict(regen(tmp_path, "show", run_id[:5], "--json"))
    assert shown["id"] == run_id
    assert regen(tmp_path, "events", run_id[:4].upper(), "--json")


def test_an_ambiguous_prefix_lists_the_candidates(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Runs whose ids share their first characters, as a big database's runs come to.
    made = [uuid.UUID(f"abcd{n:028x}") for n in (0xBEEF, 2, 1)]
    real = uuid.uuid4
    with Engine(home=tmp_path) as engine:
        monkeypatch.setattr(uuid, "uuid4", lambda: made.pop() if made else real())
        ids = [engine.sync.start("tests.cli.flows:buggy").run.id for _ in range(3)]
    output = regen(tmp_path, "show", "abcd", code=2)
    assert "run id 'abcd' is ambiguous" in output
    assert all(run_id in output for run_id in ids)
    # One more character that only one of them has is enough.
    assert strict(regen(tmp_path, "show", ids[2][:-1], "--json"))["id"] == ids[2]
    assert "too short" in regen(tmp_path, "show", "abc", code=2)
    assert "no run id starts with 'ffff'" in regen(tmp_path, "cancel", "ffff", code=2)


def test_tables_fit_80_columns_without_cutting_a_status_or_a_flow_name(tmp_path: Path) -> None:
    key = "a-business-key-far-too-long-for-an-eighty-column-terminal-2026-01-01"
    regen(
        tmp_path,
        "run",
        "tests.cli.flows:configured",
        "--key",
        key,
        code=1,
        CLI_TEST_IMAGE_MAX_ATTEMPTS="abc",
    )
    regen(tmp_path, "run", "tests.cli.flows:dated", "-p", "date=2026-01-01")
    listed = regen(tmp_path, "runs", COLUMNS="80")
    lines = listed.splitlines()
    assert max(map(len, lines)) <= 80, listed
    for flow, status in (("cli-configured", "failed"), ("cli-dated", "succeeded")):
        assert any(flow in line and status in line for line in lines), listed
    ids = [r["id"] for r in runs(tmp_path)]
    assert all(run_id[:8] in listed and run_id not in listed for run_id in ids)
    assert key not in listed  # the key gives way

    wide = regen(tmp_path, "runs", "--wide", COLUMNS="80")
    assert key in wide
    assert all(run_id in wide for run_id in ids)

    shown = regen(tmp_path, "show", ids[0][:8], COLUMNS="80")
    assert max(map(len, shown.splitlines())) <= 80, shown
    for word in ("cli-dated", "headline", "succeeded"):
        assert word in shown


def test_every_json_output_is_strict_json(tmp_path: Path) -> None:
    regen(tmp_path, "run", "tests.cli.flows:odd")
    (run,) = runs(tmp_path)
    shown = strict(regen(tmp_path, "show", run["id"], "--json"))
    assert shown["checkpoint"]["step_outputs"]["measure"]["output"] == {
        "ratio": "NaN",
        "ceiling": "Infinity",
    }
    events = strict(regen(tmp_path, "events", run["id"], "--json"))
    assert events[-1]["type"] == "run.succeeded"
    followed = regen(tmp_path, "events", run["id"], "--json", "--follow")
    assert [strict(line)["seq"] for line in followed.splitlines()] == [e["seq"] for e in events]
    assert strict(regen(tmp_path, "gc", "--json"))["runs_deleted"] == 0
    worker = regen(tmp_path, "worker", "--json", "--max-runs", "0", "--poll", "0.05")
    assert [strict(line)["event"] for line in worker.splitlines()] == ["started", "stopped"]


def test_words_say_what_they_mean(tmp_path: Path) -> None:
    assert regen(tmp_path, "runs").strip() == "no runs yet"
    regen(tmp_path, "run", "tests.cli.flows:demo", "-p", "count=2", "-p", "fail_item=1")
    assert "no runs match --status failed --flow cli-demo" in regen(
        tmp_path, "runs", "--status", "failed", "--flow", "cli-demo"
    )
    refused = regen(tmp_path, "runs", "--status", "bogus", code=2)
    for status in ("queued", "running", "succeeded", "partial", "failed", "cancelled"):
        assert status in refused
    (run,) = runs(tmp_path)
    items = strict(regen(tmp_path, "show", run["id"], "--json"))["items"]["illustrate"]
    first_time = next(i["idx"] for i in items if i["status"] == "succeeded" and not i["attempts"])
    shown = regen(tmp_path, "show", run["id"])
    # A first-time success counts one attempt; the give-up counts both of its own.
    assert re.search(rf"│ {first_time} +│ succeeded │ 1 ", shown), shown
    assert re.search(r"│ 1 +│ given_up +│ 2 ", shown), shown
    assert "automatic retries: off" in shown


def test_a_bad_param_creates_no_run(tmp_path: Path) -> None:
    output = regen(tmp_path, "run", "tests.cli.flows:dated", "-p", "date=not-a-date", code=2)
    assert "date" in output
    assert runs(tmp_path) == []


def test_queue_says_queued_and_a_worker_says_what_it_does(tmp_path: Path) -> None:
    queued = regen(tmp_path, "run", "tests.cli.flows:buggy", "--queue")
    assert "queued" in queued
    assert "started" not in queued
    regen(tmp_path, "run", "tests.cli.flows:dated", "-p", "date=2026-01-01", "--queue")
    ids = {r["flow"]: r["id"][:8] for r in runs(tmp_path)}
    output = regen(tmp_path, "worker", "--max-runs", "2", "--poll", "0.05")
    assert re.search(rf"claimed {ids['cli-buggy']} \(cli-buggy\)", output), output
    assert re.search(rf"claimed {ids['cli-dated']} \(cli-dated\)", output), output
    assert f"failed {ids['cli-buggy']} (cli-buggy) at step 'divide': unknown:" in output
    assert f"finished {ids['cli-dated']} (cli-dated): succeeded" in output
    assert "worker stopped after 2 runs; 0 put back in the queue" in output


def test_a_stopped_worker_puts_its_runs_back_and_says_how_many(tmp_path: Path) -> None:
    regen(
        tmp_path,
        "run",
        "tests.cli.flows:demo",
        "-p",
        "count=20",
        "-p",
        "fail_item=-1",
        "--queue",
    )
    process = subprocess.Popen(
        [sys.executable, "-m", "regen.cli", "worker", "--json", "--poll", "0.05"],
        cwd=ROOT,
        env=_env(tmp_path, CLI_TEST_ITEM_DELAY="30"),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    assert process.stdout is not None
    lines = []
    for line in process.stdout:
        lines.append(strict(line))
        if lines[-1]["event"] == "claimed":
            break
    process.send_signal(signal.SIGINT)
    rest, errors = process.communicate(timeout=30)
    lines += [strict(line) for line in rest.splitlines()]
    assert [e["event"] for e in lines] == ["started", "claimed", "put_back", "stopped"], errors
    assert lines[-1]["put_back"] == 1
    (run,) = runs(tmp_path)
    assert run["status"] == "queued"


def test_text_output_masks_a_key_in_params_errors_and_business_keys(tmp_path: Path) -> None:
    key = str(uuid.uuid4())  # made up at run time: no known shape, known by its variable
    secret = {"MY_GATEWAY_API_KEY": key}
    ran = regen(
        tmp_path,
        "run",
        "tests.cli.flows:leaky",
        "-p",
        f"note=the key is {key}",
        "--key",
        f"batch-{key}",
        code=1,
        **secret,
    )
    (run,) = runs(tmp_path)
    outputs = [
        ran,
        regen(tmp_path, "runs", "--wide", **secret),
        regen(tmp_path, "show", run["id"], **secret),
        regen(tmp_path, "events", run["id"], **secret),
        regen(tmp_path, "events", run["id"], "--follow", "--json", **secret),
    ]
    for output in outputs:
        assert key not in output
    assert f"refused: the key is …{key[-4:]}" in ran


def test_show_and_a_worker_say_a_run_whose_process_died_is_taken_over(tmp_path: Path) -> None:
    fast = {"REGEN_LEASE_TTL_S": "0.5"}
    died = subprocess.run(
        [sys.executable, "-m", "regen.cli", "run", "tests.cli.flows:crashing"],
        cwd=ROOT,
        env=_env(tmp_path, **fast),
        capture_output=True,
        timeout=60,
        check=False,
    )
    assert died.returncode == -signal.SIGKILL
    (run,) = runs(tmp_path)
    while time.time() <= run["lease_expires_at"]:  # the dead process's lease runs out
        time.sleep(0.05)
    short = run["id"][:8]
    shown = " ".join(regen(tmp_path, "show", run["id"]).split())
    assert "its process stopped answering (lease expired" in shown
    assert f"a `regen worker` takes it over, or `regen retry {short}` now" in shown
    output = regen(
        tmp_path, "worker", "--max-runs", "1", "--poll", "0.05", CLI_TEST_NO_CRASH="1", **fast
    )
    assert "stopped answering" not in regen(tmp_path, "show", run["id"])
    assert f"taken over {short} (cli-crashing)" in output
    assert f"finished {short} (cli-crashing): succeeded" in output


def test_a_cancelled_run_says_to_start_a_new_one(tmp_path: Path) -> None:
    regen(tmp_path, "run", "tests.cli.flows:buggy", "--queue")
    (run,) = runs(tmp_path)
    assert "cancelled" in regen(tmp_path, "cancel", run["id"][:4])
    shown = regen(tmp_path, "show", run["id"][:4])
    assert "a cancelled run is not retried: start a new one: regen run tests.cli.flows:buggy" in (
        shown.replace("\n", " ")
    )


def test_show_says_where_a_retry_resumes_when_it_is_before_the_failed_step(
    tmp_path: Path,
) -> None:
    output = regen(tmp_path, "run", "tests.cli.flows:lossy", code=1)
    assert "failed at step 'total'" in output
    (run,) = strict(regen(tmp_path, "runs", "--json"))
    shown = regen(tmp_path, "show", run["id"])
    assert "retry resumes from: square (partial)" in shown
    assert "failed step: square" not in shown
