"""Image sniffing: PNG/JPEG/WEBP/GIF are recognised and measured; anything else is bad content."""

from __future__ import annotations

import hashlib
import io

import pytest
from PIL import Image as PILImage

from regen.providers import BadContent, image_info, sniff
from regen.retry import Kind, classify


def encode(fmt: str, size: tuple[int, int] = (64, 48), **options: object) -> bytes:
    buffer = io.BytesIO()
    mode = "P" if fmt == "GIF" else "RGB"
    PILImage.new(mode, size).save(buffer, fmt, **options)
    return buffer.getvalue()


@pytest.mark.parametrize(
    ("fmt", "options", "name"),
    [
        ("PNG", {}, "png"),
        ("JPEG", {}, "jpeg"),
        ("JPEG", {"progressive": True}, "jpeg"),
        ("WEBP", {}, "webp"),
        ("WEBP", {"lossless": True}, "webp"),
        ("GIF", {}, "gif"),
    ],
)
def test_formats_are_recognised_and_measured(
    fmt: str, options: dict[str, object], name: str
) -> None:
    data = encode(fmt, (64, 48), **options)
    info = image_info(data)
    assert (info.format, info.width, info.height) == (name, 64, 48)
    assert info.bytes == len(data)
    assert info.sha256 == hashlib.sha256(data).hexdigest()
    assert info.media_type == f"image/{name}"
    assert sniff(data) == name


@pytest.mark.parametrize("fmt", ["PNG", "JPEG", "WEBP", "GIF"])
def test_an_image_cut_short_is_bad_content(fmt: str) -> None:
    data = encode(fmt, (64, 48))
    with pytest.raises(BadContent) as caught:
        image_info(data[: len(data) * 2 // 3])
    assert caught.value.reason == "truncated"
    failure = classify(caught.value)
    assert (failure.kind, failure.retry) == (Kind.BAD_CONTENT, True)


@pytest.mark.parametrize(
    ("body", "reason"),
    [
        (b"", "empty"),
        (b"<!DOCTYPE html><html><body>502</body></html>", "html"),
        (b'<?xml version="1.0"?><Error><Code>AccessDenied</Code></Error>', "xml"),
        (b'{"error": "nope"}', "json"),
        (b"\x00\x01garbage", "not_an_image"),
    ],
)
def test_what_is_not_an_image_is_named(body: bytes, reason: str) -> None:
    with pytest.raises(BadContent) as caught:
        image_info(body)
    assert caught.value.reason == reason
    assert caught.value.kind is Kind.BAD_CONTENT
