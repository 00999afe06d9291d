"""Server-Sent Events over real HTTP: ids, resuming with Last-Event-ID after a dropped
connection (live and finished runs), replays without discarded stream attempts, the
all-runs stream, keep-alives."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import httpx
from tests.service.conftest import FLOWS
from tests.service.server import PYTHONPATH, ROOT, Served, sse_events
from tests.service.waiting import wait_final
from tests.store.conftest import postgres_database

from regen.engine import Engine
from regen.service import create_app


def start(client: httpx.Client, flow: str, params: dict | None = None) -> str:
    response = client.post("/api/runs", json={"flow": flow, "params": params or {}})
    assert response.status_code == 201, response.text
    return response.json()["run"]["id"]


def read(client: httpx.Client, path: str, *, count: int | None = None, **headers: str) -> list:
    """The events of one connection (``count``: hang up after that many)."""
    got = []
    with client.stream("GET", path, headers=headers) as response:
        assert response.status_code == 200, response.read()
        assert response.headers["content-type"].startswith("text/event-stream")
        for event in sse_events(response):
            if "event" not in event:
                continue
            got.append(event)
            if count is not None and len(got) == count:
                break
    return got


def seqs(events: list) -> list[int]:
    return [int(e["id"]) for e in events if "id" in e]


def text(events: list) -> str:
    """The story as a page shows it: chunks appended, cleared on a stream.reset."""
    shown = ""
    for event in events:
        if event["event"] == "stream.reset":
            shown = ""
        elif event["event"] == "chunk":
            shown += json.loads(event["data"])["data"]["text"]
    return shown


def test_a_live_run_resumed_after_a_dropped_connection_loses_and_repeats_nothing(
    client: httpx.Client, tmp_path: Path
) -> None:
    gate = tmp_path / "gate"
    run_id = start(client, "story", {"words": 8, "gate_at": 4, "gate": str(gate)})
    path = f"/api/runs/{run_id}/events"
    first = read(client, path, count=5)
    assert seqs(first) == [1, 2, 3, 4, 5]
    assert client.get(f"/api/runs/{run_id}").json()["status"] == "running"
    # Reconnect as EventSource does, with the last id seen; the run is still held.
    second = read(client, path, count=2, **{"Last-Event-ID": first[-1]["id"]})
    assert seqs(second) == [6, 7]
    gate.touch()
    rest = read(client, path, **{"Last-Event-ID": second[-1]["id"]})
    assert rest[-1]["event"] == "end"
    assert "id" not in rest[-1]
    assert json.loads(rest[-1]["data"])["status"] == "succeeded"
    whole = read(client, path)
    assert seqs(first + second + rest) == seqs(whole)
    assert text(first + second + rest) == "".join(f"w{i} " for i in range(8))


def test_a_finished_run_replays_from_any_id_and_then_says_no_more(client: httpx.Client) -> None:
    run_id = start(client, "story", {"words": 5})
    wait_final(client, run_id)
    path = f"/api/runs/{run_id}/events"
    whole = read(client, path)
    ids = seqs(whole)
    assert ids == list(range(1, len(ids) + 1))
    for cut in (1, 3, len(ids) - 1):
        resumed = read(client, path, **{"Last-Event-ID": str(ids[cut - 1])})
        assert seqs(resumed) == ids[cut:]
    by_query = read(client, f"{path}?after=3")
    assert seqs(by_query) == ids[3:]
    # Past the end of a finished run: 204, which stops an EventSource reconnecting.
    done = client.get(path, headers={"Last-Event-ID": str(ids[-1])})
    assert done.status_code == 204
    assert client.get(path, headers={"Last-Event-ID": "abc"}).status_code == 400


def test_a_replay_skips_the_chunks_of_a_discarded_attempt(client: httpx.Client) -> None:
    run_id = start(client, "story", {"words": 4, "cut_at": 2})
    wait_final(client, run_id)
    replay = read(client, f"/api/runs/{run_id}/events")
    chunks = [json.loads(e["data"])["data"] for e in replay if e["event"] == "chunk"]
    assert [(c["attempt"], c["text"]) for c in chunks] == [
        (2, "w0 "),
        (2, "w1 "),
        (2, "w2 "),
        (2, "w3 "),
    ]
    assert [e["event"] for e in replay].count("stream.reset") == 1
    assert text(replay) == "w0 w1 w2 w3 "
    # A client that saw the first chunk of the cut attempt before it dropped gets the
    # reset, so it clears that text, and never the rest of the cut attempt.
    log = [json.loads(e["data"]) for e in replay]
    reset = next(e["seq"] for e in log if e["type"] == "stream.reset")
    resumed = read(client, f"/api/runs/{run_id}/events", **{"Last-Event-ID": str(reset - 3)})
    assert text(resumed) == "w0 w1 w2 w3 "
    assert all(
        json.loads(e["data"])["data"].get("attempt") != 1
        for e in resumed[1:]
        if e["event"] == "chunk"
    )


def test_a_live_follower_gets_the_reset_of_a_cut_attempt(
    client: httpx.Client, tmp_path: Path
) -> None:
    gate = tmp_path / "gate"
    run_id = start(client, "story", {"words": 4, "cut_at": 3, "gate_at": 2, "gate": str(gate)})
    path = f"/api/runs/{run_id}/events"
    got = []
    with client.stream("GET", path) as response:
        for event in sse_events(response):
            if "event" not in event:
                continue
            got.append(event)
            data = json.loads(event["data"])
            if event["event"] == "chunk" and data["data"]["text"] == "w1 ":
                gate.touch()  # live: the cut attempt's chunks were sent as they came
    kinds = [e["event"] for e in got]
    assert kinds.count("stream.reset") == 1
    attempts = [json.loads(e["data"])["data"]["attempt"] for e in got if e["event"] == "chunk"]
    assert attempts[:3] == [1, 1, 1]
    assert text(got) == "w0 w1 w2 w3 "


def test_many_followers_of_one_run_each_get_every_event(
    client: httpx.Client, served: Served, tmp_path: Path
) -> None:
    import threading  # noqa: PLC0415

    gate = tmp_path / "gate"
    run_id = start(client, "story", {"words": 30, "gate_at": 1, "gate": str(gate)})
    results: list[list[int]] = []
    ready = threading.Barrier(9)

    def follow() -> None:
        with (
            httpx.Client(base_url=served.url, timeout=20) as own,
            own.stream("GET", f"/api/runs/{run_id}/events") as response,
        ):
            ids = []
            for event in sse_events(response):
                if "id" in event:
                    ids.append(int(event["id"]))
                    if len(ids) == 4:
                        ready.wait(10)
            results.append(ids)

    threads = [threading.Thread(target=follow) for _ in range(8)]
    for thread in threads:
        thread.start()
    ready.wait(10)
    gate.touch()
    for thread in threads:
        thread.join(20)
    assert len(results) == 8
    expected = list(range(1, results[0][-1] + 1))
    assert all(ids == expected for ids in results)


def test_the_all_runs_stream_resumes_by_global_cursor(client: httpx.Client) -> None:
    first = start(client, "story", {"words": 1})
    wait_final(client, first)
    events = read(client, "/api/events", count=3)
    assert [e["event"] for e in events] == ["run.queued", "run.started", "run.succeeded"]
    assert all(json.loads(e["data"])["run_id"] == first for e in events)
    cursors = seqs(events)
    assert cursors == sorted(cursors)
    second = start(client, "story", {"words": 1})
    wait_final(client, second)
    resumed = read(client, "/api/events", count=3, **{"Last-Event-ID": events[-1]["id"]})
    assert [json.loads(e["data"])["run_id"] for e in resumed] == [second] * 3
    assert min(seqs(resumed)) > cursors[-1]
    queried = read(client, f"/api/events?after={events[1]['id']}", count=1)
    assert queried[0]["id"] == events[2]["id"]


def test_an_idle_stream_sends_retry_and_keep_alive_comments(
    client: httpx.Client, tmp_path: Path
) -> None:
    gate = tmp_path / "gate"
    run_id = start(client, "story", {"words": 2, "gate_at": 0, "gate": str(gate)})
    seen = []
    with client.stream("GET", f"/api/runs/{run_id}/events") as response:
        for event in sse_events(response):
            seen.append(event)
            if event.get("comment") == "keep-alive":
                gate.touch()
    assert seen[0] == {"retry": "2000"}
    assert {"comment": "keep-alive"} in seen
    assert seen[-1]["event"] == "end"


def test_a_stream_is_never_silent_for_longer_than_the_keep_alive_interval(
    engine: Engine, tmp_path: Path
) -> None:
    # A proxy that closes connections idle for the interval must never see one that long:
    # the silence used to last up to two intervals.
    keepalive = 1.0
    gate = tmp_path / "gate"
    silences = []
    app = create_app(engine, flows=FLOWS, execute=True, keepalive=keepalive)
    with Served(app) as server, httpx.Client(base_url=server.url, timeout=10) as client:
        run_id = start(client, "story", {"words": 1, "gate_at": 0, "gate": str(gate)})
        with client.stream("GET", f"/api/runs/{run_id}/events") as response:
            last = time.monotonic()
            for event in sse_events(response):
                now = time.monotonic()
                silences.append(now - last)
                last = now
                if event.get("comment") == "keep-alive" and len(silences) > 6:
                    gate.touch()
                    break
    assert max(silences) < 1.6 * keepalive, silences  # one interval and slack


def test_a_run_executed_by_another_engine_is_followed(
    engine: Engine, database: str, tmp_path: Path
) -> None:
    # A server that only queues (--no-execute): the run is executed elsewhere (here, by
    # another engine on the same database) and the stream still follows it to its end.
    app = create_app(engine, flows=["tests.service.flows:story"], poll=0.05)
    with Served(app) as served, httpx.Client(base_url=served.url, timeout=20) as c:
        run_id = start(c, "story", {"words": 3})
        other = Engine(database, home=tmp_path)
        try:
            done = threading_run(other, run_id)
            got = read(c, f"/api/runs/{run_id}/events", count=None)
        finally:
            done.join(20)
            other.close()
    assert text(got) == "w0 w1 w2 "
    assert got[-1]["event"] == "end"


def threading_run(engine: Engine, run_id: str):
    import threading  # noqa: PLC0415

    from tests.service import flows  # noqa: PLC0415

    engine.register(flows.story)
    thread = threading.Thread(target=lambda: engine.sync.execute(run_id))
    thread.start()
    return thread


def test_a_subscriber_that_stops_reading_blocks_neither_the_run_nor_others(
    client: httpx.Client, served: Served, tmp_path: Path
) -> None:
    import re  # noqa: PLC0415
    import socket  # noqa: PLC0415

    gate = tmp_path / "gate"
    words = 4000  # more than a follower's queue holds, and than the socket buffers hold
    run_id = start(client, "story", {"words": words, "pad": 3000, "gate_at": 0, "gate": str(gate)})
    host, port = served.url.removeprefix("http://").split(":")
    slow = socket.socket()
    slow.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    slow.connect((host, int(port)))
    slow.sendall(f"GET /api/runs/{run_id}/events HTTP/1.1\r\nHost: {host}\r\n\r\n".encode())
    try:
        gate.touch()
        fast = read(client, f"/api/runs/{run_id}/events")
        assert wait_final(client, run_id)["status"] == "succeeded"  # while one never read
        everything = seqs(fast)
        assert everything == list(range(1, everything[-1] + 1))
        assert text(fast).count(".") == words * 3000
        received = b""
        slow.settimeout(10)
        while b"event: end\n" not in received[-300:]:
            data = slow.recv(1 << 20)
            assert data, "the server closed the slow subscriber's stream early"
            received += data
    finally:
        slow.close()
    ids = [int(n) for n in re.findall(rb"\nid: (\d+)\n", b"\n" + received)]
    assert ids == everything


def test_a_run_executed_by_a_worker_process_on_postgresql_is_followed_as_it_happens(
    tmp_path: Path,
) -> None:
    # The service only queues; a `regen worker` process executes the run. The service's
    # streams poll the database every 30 s, so a stream that keeps up with the run
    # hears the worker's commits through LISTEN/NOTIFY.
    words, delay, poll = 20, 0.1, 30.0
    with (
        postgres_database() as url,
        Engine(url, home=tmp_path) as engine,
        Served(create_app(engine, flows=["tests.service.flows:story"], poll=poll)) as served,
        httpx.Client(base_url=served.url, timeout=30) as c,
    ):
        run_id = start(c, "story", {"words": words, "delay": delay})
        command = [sys.executable, "-m", "regen.cli", "--database-url", url]
        command += ["--home", str(tmp_path), "worker", "--flow", "tests.service.flows:story"]
        worker = subprocess.Popen(
            [*command, "--max-runs", "1"],
            cwd=ROOT,
            env={**os.environ, "PYTHONPATH": PYTHONPATH},
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        try:
            began = time.monotonic()
            got, live = [], 0
            with c.stream("GET", f"/api/runs/{run_id}/events") as response:
                for event in sse_events(response):
                    if "event" in event:
                        got.append(event)
                        live += event["event"] == "chunk" and worker.poll() is None
            took = time.monotonic() - began
            assert worker.wait(30) == 0
        finally:
            worker.kill()
            worker.wait(30)
    ids = seqs(got)
    assert ids == list(range(1, len(ids) + 1))  # in order, none missing, none repeated
    assert text(got) == "".join(f"w{i} " for i in range(words))
    assert got[-1]["event"] == "end"
    assert json.loads(got[-1]["data"])["status"] == "succeeded"
    assert live >= words // 2  # received while the worker was still writing them
    assert took < poll / 2  # never waited for a poll
