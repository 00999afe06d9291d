"""Generated images: valid PNGs of the asked size, deterministic, cheap."""

from __future__ import annotations

import io

import pytest
from PIL import Image

from regen.sim._images import (
    image_id,
    parse_dashscope_size,
    parse_openai_size,
    ratio_size,
    render_gif,
    render_png,
)


@pytest.mark.parametrize("size", [(1024, 1024), (1792, 1024), (333, 77)])
def test_png_has_exactly_the_asked_size(size: tuple[int, int]) -> None:
    image = Image.open(io.BytesIO(render_png("a fox", *size)))
    assert image.format == "PNG"
    assert image.size == size
    image.load()


def test_same_prompt_same_bytes_other_prompt_other_bytes() -> None:
    assert render_png("a fox", 256, 256) == render_png("a fox", 256, 256)
    assert render_png("a fox", 256, 256) != render_png("a cat", 256, 256)
    assert render_png("a fox", 256, 256) != render_png("a fox", 256, 256, variant=1)


def test_chinese_prompts_render() -> None:
    image = Image.open(io.BytesIO(render_png("一只在雪地里的红狐狸", 512, 512)))
    assert image.size == (512, 512)
    assert len(image_id("一只在雪地里的红狐狸")) == 8


def test_gif_is_animated() -> None:
    image = Image.open(io.BytesIO(render_gif("waves", 1280, 720)))
    assert image.format == "GIF"
    assert image.n_frames > 1
    assert image.size == (480, 270)


def test_sizes() -> None:
    assert parse_openai_size("1024x768") == (1024, 768)
    assert parse_openai_size("auto") == (1024, 1024)
    assert parse_dashscope_size("720*1280") == (720, 1280)
    for bad in ("1024*1024", "big", "10x10", "9000x100"):
        with pytest.raises(ValueError, match="size"):
            parse_openai_size(bad)
    with pytest.raises(ValueError, match="WIDTH\\*HEIGHT"):
        parse_dashscope_size("1024x1024")


def test_ratio_and_resolution() -> None:
    assert ratio_size("16:9", "2k") == ((1024, 576), (2048, 1152))
    assert ratio_size("1:1", None) == ((1024, 1024), (1024, 1024))
    assert ratio_size("3:4", "4K") == ((768, 1024), (3072, 4096))
    with pytest.raises(ValueError, match="ratio"):
        ratio_size("wide", None)
    with pytest.raises(ValueError, match="resolution"):
        ratio_size("1:1", "8k")
