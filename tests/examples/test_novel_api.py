"""Seed 001 over real HTTP: the novel example's API served by uvicorn on loopback, its
chapters written by the regen simulator (faults scripted per request), read by a plain
streaming client."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from examples.novel import CHAPTER_COMPLETED, NO_CHOICE, NovelApp
from examples.novel.client import (
    PREFIX,
    Received,
    after_content,
    generate,
    parse,
    read,
    wait_for_status,
)
from examples.novel.testing import serve
from examples.novel.web import create_app

from regen.engine import Engine
from regen.sim import SimServer, run_simulator

#: Seconds between the simulator's streamed words: a chapter streams for about a second.
CHUNK_DELAY = 0.02


@pytest.fixture
def sim(monkeypatch: pytest.MonkeyPatch) -> Iterator[SimServer]:
    with run_simulator(chunk_delay=CHUNK_DELAY) as server:
        monkeypatch.setenv("NOVEL_BASE_URL", server.openai_base_url)
        monkeypatch.setenv("NOVEL_API_KEY", "sk-novel-test-00000001")
        monkeypatch.setenv("NOVEL_MODEL", "sim")
        monkeypatch.setenv("NOVEL_CHAT_RETRY_SLEEP_S", "0.05")
        yield server


@pytest.fixture
def base(sim: SimServer, tmp_path: Path) -> Iterator[str]:
    with serve(create_app(tmp_path, poll=0.1)) as url:
        yield url


@pytest.fixture
def client(base: str) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=base, timeout=30) as http:
        yield http


def chat_requests(sim: SimServer) -> int:
    route = sim.stats()["routes"].get("chat_stream")
    return 0 if route is None else int(route["requests"])


def new_novel(client: httpx.Client, premise: str = "灯塔看守人在雾夜收到一封没有署名的信") -> int:
    response = client.post(PREFIX, json={"title": "雾港", "premise": premise})
    assert response.status_code == 201, response.text
    return int(response.json()["id"])


def complete_chapter(client: httpx.Client, novel_id: int, number: int) -> Received:
    received = generate(client, novel_id, number)
    assert received.status == 200, received.body
    assert received.kinds()[-1] == "complete", received.kinds()
    return received


def choose(client: httpx.Client, novel_id: int, number: int, option: dict[str, Any]) -> None:
    response = client.post(
        f"{PREFIX}/{novel_id}/chapters/{number}/choice", json={"option_id": option["id"]}
    )
    assert response.status_code == 201, response.text


def latest(client: httpx.Client, novel_id: int) -> Any:
    return client.get(f"{PREFIX}/{novel_id}/chapters/latest").json()


def check_whole(received: Received, stored: dict[str, Any]) -> None:
    """The stream carries the stored chapter: its title, its text once, its options."""
    title, text, options = received.chapter()
    assert title == stored["title"]
    assert text == stored["content"]
    assert options == stored["options"]


# --- the seed's flow -------------------------------------------------------------------------


def test_first_chapter_streams_summary_content_and_complete_with_ids(
    client: httpx.Client, sim: SimServer
) -> None:
    novel_id = new_novel(client)
    assert latest(client, novel_id) is None

    received = generate(client, novel_id, 0)  # 0: the latest; none yet, so chapter 1

    assert received.status == 200
    assert received.retry == "3000"
    kinds = received.kinds()
    assert kinds[0] == "summary"
    assert kinds[-1] == "complete"
    assert set(kinds[1:-1]) == {"content"}
    assert len(kinds) > 5
    seqs = [int(i.removeprefix("g1-")) for i in received.ids]
    assert all(i.startswith("g1-") for i in received.ids)
    assert seqs == sorted(set(seqs))
    stored = latest(client, novel_id)
    assert stored["status"] == "completed"
    assert stored["chapter_number"] == 1
    check_whole(received, stored)
    options = received.events[-1].data["options"]
    assert len(options) == 3
    assert all(isinstance(o["id"], int) and o["text"] for o in options)
    assert chat_requests(sim) == 1
    # The chapter was written from the novel's settings.
    (prompt,) = [p for p in sim.stats()["prompts"] if "灯塔看守人" in p]
    assert "请写第1章" in prompt

    again = generate(client, novel_id, 1)
    assert again.status == 400
    assert again.body == {"detail": CHAPTER_COMPLETED}
    assert generate(client, novel_id, 0).body == {"detail": CHAPTER_COMPLETED}
    assert chat_requests(sim) == 1


def test_a_later_chapter_needs_the_readers_choice_on_the_previous_one(
    client: httpx.Client, sim: SimServer
) -> None:
    novel_id = new_novel(client)
    first = complete_chapter(client, novel_id, 1)

    refused = generate(client, novel_id, 2)
    assert refused.status == 400
    assert refused.body == {"detail": NO_CHOICE}
    assert generate(client, novel_id, 3).body == {"detail": NO_CHOICE}
    assert latest(client, novel_id)["chapter_number"] == 1  # nothing was created

    option = first.events[-1].data["options"][1]
    choose(client, novel_id, 1, option)
    second = complete_chapter(client, novel_id, 2)

    stored = latest(client, novel_id)
    assert stored["chapter_number"] == 2
    check_whole(second, stored)
    assert client.get(f"{PREFIX}/{novel_id}/chapters/1").json()["chosen_option_id"] == option["id"]
    assert any(option["text"] in prompt for prompt in sim.stats()["prompts"])
    # A choice cannot change once the next chapter is written; an option of another
    # chapter is refused.
    other = first.events[-1].data["options"][0]
    late = client.post(f"{PREFIX}/{novel_id}/chapters/1/choice", json={"option_id": other["id"]})
    assert late.status_code == 409
    foreign = client.post(
        f"{PREFIX}/{novel_id}/chapters/2/choice", json={"option_id": option["id"]}
    )
    assert foreign.status_code == 400
    nowhere = client.post(f"{PREFIX}/{novel_id}/chapters/9/choice", json={"option_id": 1})
    assert (nowhere.status_code, nowhere.json()) == (404, {"detail": "章节不存在"})


def test_requests_are_checked(client: httpx.Client) -> None:
    novel_id = new_novel(client)
    assert client.post(PREFIX, json={"title": "", "premise": "x"}).status_code == 422
    missing = client.post(f"{PREFIX}/999/chapters/generate", json={"chapter_number": 0})
    assert missing.status_code == 404
    assert missing.json() == {"detail": "小说不存在"}
    negative = client.post(f"{PREFIX}/{novel_id}/chapters/generate", json={"chapter_number": -1})
    assert negative.status_code == 422
    huge = 10**20  # beyond what SQLite holds: refused, not a server error
    too_far = client.post(f"{PREFIX}/{novel_id}/chapters/generate", json={"chapter_number": huge})
    assert too_far.status_code == 422
    assert client.get(f"{PREFIX}/{huge}/chapters/latest").status_code == 422
    # Another reader's novel is not theirs to read.
    assert client.get(f"{PREFIX}/{novel_id}", headers={"X-User-Id": "2"}).status_code == 404
    assert generate(client, novel_id, 1, user=2).status == 404
    assert client.get(f"{PREFIX}/{novel_id}/chapters/1/stream").status_code == 404
    assert client.get(f"{PREFIX}/{novel_id}/chapters/1").status_code == 404
    # A Last-Event-ID beyond any log is not one this stream sent: the chapter from its start.
    first = generate(client, novel_id, 1)
    replayed = client.get(
        f"{PREFIX}/{novel_id}/chapters/1/stream", headers={"Last-Event-ID": f"g1-{huge}"}
    )
    assert replayed.status_code == 200
    assert "event: complete" in replayed.text
    assert first.kinds()[-1] == "complete"


# --- reconnecting -----------------------------------------------------------------------------


def test_reconnecting_with_last_event_id_gets_only_what_follows(
    client: httpx.Client, sim: SimServer
) -> None:
    novel_id = new_novel(client)
    cut = generate(client, novel_id, 0, stop=after_content(3))  # the reader's tab drops
    assert cut.kinds()[:4] == ["summary", "content", "content", "content"]

    resumed = generate(client, novel_id, 0, last_event_id=cut.ids[-1])

    def seq(event_id: str) -> int:
        return int(event_id.split("-")[1])

    assert seq(resumed.ids[0]) > seq(cut.ids[-1])
    assert "summary" not in resumed.kinds()
    stored = latest(client, novel_id)
    title, text, options = Received(200, cut.events + resumed.events).chapter()
    assert (title, text, options) == (stored["title"], stored["content"], stored["options"])
    assert chat_requests(sim) == 1
    # A re-POST cut off just before the end gets the rest; with nothing left, 400.
    rest = generate(client, novel_id, 0, last_event_id=resumed.ids[-2])
    assert rest.kinds() == ["complete"]
    assert generate(client, novel_id, 0, last_event_id=resumed.ids[-1]).status == 400


def test_a_request_without_last_event_id_gets_the_chapter_from_its_start(
    client: httpx.Client, sim: SimServer
) -> None:
    novel_id = new_novel(client)
    generate(client, novel_id, 0, stop=after_content(2))

    again = generate(client, novel_id, 0)  # attaches mid-generation

    assert again.kinds()[0] == "summary"
    assert again.kinds().count("summary") == 1
    check_whole(again, latest(client, novel_id))
    assert chat_requests(sim) == 1


def test_get_stream_for_event_source_replays_resumes_and_stops(
    client: httpx.Client, sim: SimServer
) -> None:
    novel_id = new_novel(client)
    live = generate(client, novel_id, 0, stop=after_content(1))
    url = f"{PREFIX}/{novel_id}/chapters/1/stream"
    with client.stream("GET", url, headers={"Last-Event-ID": live.ids[-1]}) as response:
        following = read(response)
    stored = wait_for_status(client, novel_id, "completed")
    assert Received(200, live.events + following.events).chapter()[1] == stored["content"]

    with client.stream("GET", url) as response:
        replay = read(response)
    check_whole(replay, stored)
    assert replay.ids[-1] == following.ids[-1]
    # An EventSource reconnecting after the end is told to stop (204).
    ended = client.get(url, headers={"Last-Event-ID": replay.ids[-1]})
    assert ended.status_code == 204
    assert chat_requests(sim) == 1


def test_a_discarded_attempt_is_followed_by_a_new_summary(
    client: httpx.Client, sim: SimServer
) -> None:
    sim.script({"route": "chat_stream", "steps": ["stream_cut:0.8"]})
    novel_id = new_novel(client)

    live = generate(client, novel_id, 0)

    assert live.kinds().count("summary") == 2  # the cut attempt's, then the retry's
    stored = latest(client, novel_id)
    check_whole(live, stored)  # text afresh on every summary: no text twice
    assert chat_requests(sim) == 2
    with client.stream("GET", f"{PREFIX}/{novel_id}/chapters/1/stream") as response:
        replay = read(response)
    assert replay.kinds().count("summary") == 1  # a replay skips the discarded attempt
    check_whole(replay, stored)


def test_generation_goes_on_when_the_reader_goes_away(client: httpx.Client) -> None:
    novel_id = new_novel(client)
    generate(client, novel_id, 0, stop=lambda events: events[0].event == "summary")
    assert latest(client, novel_id)["status"] == "generating"
    stored = wait_for_status(client, novel_id, "completed")
    assert stored["content"]
    assert len(stored["options"]) == 3


# --- failures and the seed's retry -----------------------------------------------------------


def fail_next_chapter(sim: SimServer) -> None:
    """The next chat request is refused (401): the generation fails at once."""
    sim.script({"route": "chat_stream", "steps": ["auth"]})


def test_basic_retry_cleans_up_the_failed_third_chapter_and_keeps_the_choices(
    client: httpx.Client, sim: SimServer, tmp_path: Path
) -> None:
    novel_id = new_novel(client)
    picks = []
    for number in (1, 2):
        done = complete_chapter(client, novel_id, number)
        picks.append(done.events[-1].data["options"][number - 1])
        choose(client, novel_id, number, picks[-1])
    fail_next_chapter(sim)

    failed = generate(client, novel_id, 3)

    assert failed.kinds()[-1] == "failed"
    assert failed.events[-1].data["message"] == "章节生成失败，请重试"
    # The reader learns the kind of failure, not the provider's address or the exception.
    assert failed.events[-1].data["reason"] == "auth"
    broken = latest(client, novel_id)
    assert broken["status"] == "failed"
    assert broken["error"] == "auth"
    assert broken["chapter_number"] == 3
    assert broken["options"] == []

    retried = generate(client, novel_id, 0, last_event_id=failed.ids[-1])  # "重新生成"

    assert retried.kinds()[0] == "summary"  # the new generation, from its start
    assert all(i.startswith("g2-") for i in retried.ids)
    stored = latest(client, novel_id)
    assert stored["status"] == "completed"
    assert stored["generation"] == 2
    check_whole(retried, stored)
    for number, pick in zip((1, 2), picks, strict=True):
        kept = client.get(f"{PREFIX}/{novel_id}/chapters/{number}").json()
        assert kept["status"] == "completed"
        assert kept["chosen_option_id"] == pick["id"]
    assert any(picks[1]["text"] in prompt for prompt in sim.stats()["prompts"])
    assert chat_requests(sim) == 4

    async def chapter_three_runs() -> list[str | None]:
        async with Engine(home=tmp_path) as engine:
            runs = await engine.list_runs()
        return sorted(r.business_key or "" for r in runs if ":chapter:3:" in (r.business_key or ""))

    # The seed deletes the failed chapter's stream (Redis): the failed generation's run goes.
    assert asyncio.run(chapter_three_runs()) == [f"novel:{novel_id}:chapter:3:g2"]


def test_a_choice_changed_while_the_next_chapter_failed_writes_it_from_the_new_one(
    client: httpx.Client, sim: SimServer
) -> None:
    novel_id = new_novel(client)
    options = complete_chapter(client, novel_id, 1).events[-1].data["options"]
    choose(client, novel_id, 1, options[0])
    fail_next_chapter(sim)
    assert generate(client, novel_id, 2).kinds()[-1] == "failed"

    choose(client, novel_id, 1, options[2])  # 返回上一章, another option
    again = generate(client, novel_id, 2)  # "重新生成"

    assert again.kinds()[-1] == "complete"
    assert (
        client.get(f"{PREFIX}/{novel_id}/chapters/1").json()["chosen_option_id"]
        == (options[2]["id"])
    )
    last_prompt = list(sim.stats()["prompts"])[-1]
    assert options[2]["text"] in last_prompt
    assert options[0]["text"] not in last_prompt
    late = client.post(
        f"{PREFIX}/{novel_id}/chapters/1/choice", json={"option_id": options[1]["id"]}
    )
    assert late.status_code == 409  # written now: the choice stands


def test_a_reader_cut_off_before_an_unseen_failure_gets_the_failure_not_a_new_chapter(
    client: httpx.Client, sim: SimServer
) -> None:
    novel_id = new_novel(client)
    sim.script({"route": "chat_stream", "steps": ["stream_cut"] * 3})  # every attempt breaks
    failed = generate(client, novel_id, 1)  # what the server sent; the reader saw the start
    assert failed.kinds()[-1] == "failed"
    requests = chat_requests(sim)

    seen = failed.ids[1]
    reconnected = generate(client, novel_id, 1, last_event_id=seen)

    assert reconnected.kinds()[-1] == "failed"
    assert reconnected.ids[-1] == failed.ids[-1]
    assert all(int(i.removeprefix("g1-")) > int(seen.removeprefix("g1-")) for i in reconnected.ids)
    assert chat_requests(sim) == requests  # nothing generated again, nothing billed
    assert latest(client, novel_id)["generation"] == 1


def test_a_failed_first_chapter_is_written_again_from_the_settings(
    client: httpx.Client, sim: SimServer
) -> None:
    fail_next_chapter(sim)
    novel_id = new_novel(client, premise="沙漠中的图书馆每晚移动一次")
    assert generate(client, novel_id, 0).kinds()[-1] == "failed"
    assert latest(client, novel_id)["status"] == "failed"

    retried = generate(client, novel_id, 0)

    stored = latest(client, novel_id)
    assert stored["status"] == "completed"
    assert stored["chapter_number"] == 1
    check_whole(retried, stored)
    prompts = [p for p in sim.stats()["prompts"] if "沙漠中的图书馆" in p]
    assert len(prompts) == 1
    assert sim.stats()["prompts"][prompts[0]]["requests"] == 2


def test_a_failed_chapter_whose_stream_record_is_gone_is_regenerated(
    client: httpx.Client, sim: SimServer, tmp_path: Path
) -> None:
    fail_next_chapter(sim)
    novel_id = new_novel(client)
    generate(client, novel_id, 0)
    assert latest(client, novel_id)["status"] == "failed"

    async def forget_finished_runs() -> None:  # the failed generation's log is cleaned away
        async with Engine(home=tmp_path) as engine:
            await engine.gc(now=time.time() + 365 * 86400)
            assert await engine.list_runs() == []

    asyncio.run(forget_finished_runs())
    assert client.get(f"{PREFIX}/{novel_id}/chapters/1/stream").status_code == 410

    retried = generate(client, novel_id, 0)

    assert retried.status == 200
    stored = latest(client, novel_id)
    assert stored["status"] == "completed"
    assert stored["generation"] == 2
    check_whole(retried, stored)


async def post_at_once(base: str, novel_id: int, count: int) -> list[Received]:
    """``count`` generate requests sent together, each read to its end."""

    async def one(http: httpx.AsyncClient) -> Received:
        async with http.stream(
            "POST", f"{PREFIX}/{novel_id}/chapters/generate", json={"chapter_number": 0}
        ) as response:
            body = "".join([part async for part in response.aiter_text()])
        return parse(body.split("\n"), Received(response.status_code))

    limits = httpx.Limits(max_connections=count)
    async with httpx.AsyncClient(base_url=base, timeout=30, limits=limits) as http:
        return await asyncio.gather(*(one(http) for _ in range(count)))


def test_twenty_concurrent_requests_start_one_generation_and_all_get_the_chapter(
    base: str, client: httpx.Client, sim: SimServer
) -> None:
    novel_id = new_novel(client)

    answers = asyncio.run(post_at_once(base, novel_id, 20))

    assert [a.status for a in answers] == [200] * 20
    stored = latest(client, novel_id)
    chapters = {repr(a.chapter()) for a in answers}
    assert len(chapters) == 1
    check_whole(answers[0], stored)
    assert chat_requests(sim) == 1


def test_two_quick_retries_of_a_failed_chapter_regenerate_it_once(
    base: str, client: httpx.Client, sim: SimServer
) -> None:
    novel_id = new_novel(client)
    first = complete_chapter(client, novel_id, 1)
    pick = first.events[-1].data["options"][2]
    choose(client, novel_id, 1, pick)
    fail_next_chapter(sim)
    assert generate(client, novel_id, 2).kinds()[-1] == "failed"
    assert chat_requests(sim) == 2

    answers = asyncio.run(post_at_once(base, novel_id, 2))

    assert [a.status for a in answers] == [200, 200]
    assert answers[0].chapter() == answers[1].chapter()
    stored = latest(client, novel_id)
    assert stored["generation"] == 2
    check_whole(answers[0], stored)
    assert chat_requests(sim) == 3
    assert client.get(f"{PREFIX}/{novel_id}/chapters/1").json()["chosen_option_id"] == pick["id"]


def test_a_chapter_left_generating_by_a_dead_process_is_failed_or_resumed_on_start(
    sim: SimServer, tmp_path: Path
) -> None:
    """An app opening the data directory brings every chapter's status up to date."""

    async def scenario() -> None:
        async with NovelApp(tmp_path, worker=False) as app:
            novel = app.create_novel(1, "雾港", "x")
            opened = await app.open_chapter(novel.id, 1, 0)
            await app.engine.cancel(opened.run_id)  # queued: cancelled at once
            assert app.records.chapter(novel.id, 1).status == "generating"  # type: ignore[union-attr]
        async with NovelApp(tmp_path, worker=False) as app:
            found = app.records.chapter(novel.id, 1)  # as the start-up left it
            assert found is not None
            assert found.status == "failed"

    asyncio.run(scenario())


def test_a_quiet_stream_sends_keep_alive_comments(sim: SimServer, tmp_path: Path) -> None:
    sim.script({"route": "chat_stream", "steps": ["slow:0.5"]})  # the model thinks first
    with (
        serve(create_app(tmp_path, poll=0.1, keep_alive=0.05)) as url,
        httpx.Client(base_url=url, timeout=30) as client,
    ):
        novel_id = new_novel(client)
        received = generate(client, novel_id, 0)
        assert received.comments >= 3
        check_whole(received, latest(client, novel_id))


def test_the_reading_page_is_served(client: httpx.Client) -> None:
    page = client.get("/")
    assert page.status_code == 200
    assert page.headers["content-type"].startswith("text/html")
    assert "/chapters/generate" in page.text
    assert "Last-Event-ID" in page.text
