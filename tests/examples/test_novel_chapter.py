"""Reading a model's streamed chapter into the seed's events: the title line, the text
passed on as it arrives, the options after the marker — however the answer is split."""

from __future__ import annotations

import pytest
from examples.novel import DEFAULT_OPTIONS, ChapterReader
from examples.novel.chapter import messages

ANSWER = (
    "# 第一章 雾夜来信\n\n雾从海面爬上礁石。看守人点亮了灯。\n信封上没有名字。\n\n"
    "【选项】\n1. 拆开信\n2、把信交给镇长\n3) 烧掉它\n"
)


def read_in_pieces(answer: str, size: int, number: int = 1) -> tuple[list[tuple[str, str]], dict]:
    reader = ChapterReader(number)
    out: list[tuple[str, str]] = []
    for start in range(0, len(answer), size):
        out.extend(reader.feed(answer[start : start + size]))
    out.extend(reader.close())
    return out, reader.result()


@pytest.mark.parametrize("size", [1, 2, 3, 7, 1000])
def test_title_text_and_options_come_out_whatever_the_split(size: int) -> None:
    out, result = read_in_pieces(ANSWER, size)

    assert out[0] == ("title", "第一章 雾夜来信")
    assert [kind for kind, _ in out[1:]] == ["text"] * (len(out) - 1)
    text = "".join(value for _, value in out[1:])
    assert text == "雾从海面爬上礁石。看守人点亮了灯。\n信封上没有名字。\n\n"
    assert "【" not in text
    assert result == {
        "title": "第一章 雾夜来信",
        "text": text,
        "options": ["拆开信", "把信交给镇长", "烧掉它"],
    }


def test_an_answer_without_a_title_line_or_options_gets_the_defaults() -> None:
    answer = "Simulated reply to «小说»: the quiet river carries light across old stone " * 3
    out, result = read_in_pieces(answer, 5, number=4)

    assert out[0] == ("title", "第4章")
    assert "".join(value for _, value in out[1:]) == answer == result["text"]
    assert result["options"] == list(DEFAULT_OPTIONS)


def test_a_short_answer_ending_before_any_line_break_is_all_text() -> None:
    out, result = read_in_pieces("很短的一章。", 2, number=2)
    assert out == [("title", "第2章"), ("text", "很短的一章。")]
    assert result["text"] == "很短的一章。"


def test_a_long_first_line_is_text_not_a_title() -> None:
    line = "雾" * 60 + "\n下一段。"
    out, result = read_in_pieces(line, 4)
    assert out[0] == ("title", "第1章")
    assert result["text"] == line


def test_chapter_one_is_asked_from_the_settings_and_later_ones_from_the_choice() -> None:
    first = messages("雾港", "灯塔看守人收到一封信", 1)[-1]["content"]
    assert "灯塔看守人收到一封信" in first
    assert "请写第1章" in first
    later = messages("雾港", "灯塔", 3, {"title": "第二章", "content": "……他推开了门"}, "拆开信")
    assert "读者的选择：拆开信" in later[-1]["content"]
    assert "他推开了门" in later[-1]["content"]
