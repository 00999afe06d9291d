"""Real images: deterministic PNGs (and GIFs standing in for videos) drawn from a prompt.

The picture is a banded gradient and shapes whose colours and places come from a hash of
the prompt, with a short ASCII id, the size and, when a font can draw it, the prompt.
Drawing happens in palette mode, so a 1024x1024 PNG costs a few milliseconds.
"""

from __future__ import annotations

import asyncio
import functools
import hashlib
import io
import os
import re
from collections import OrderedDict
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from PIL import Image, ImageDraw, ImageFont

MIN_SIDE = 64
MAX_SIDE = 4096
PREVIEW_LONG_EDGE = 1024
_RESOLUTIONS = {"1k": 1024, "2k": 2048, "4k": 4096}
_OPENAI_SIZE = re.compile(r"^(\d{1,5})x(\d{1,5})$")
_DASHSCOPE_SIZE = re.compile(r"^(\d{1,5})\*(\d{1,5})$")
_RATIO = re.compile(r"^(\d{1,3}):(\d{1,3})$")


def _checked(width: int, height: int, text: str) -> tuple[int, int]:
    if not (MIN_SIDE <= width <= MAX_SIDE and MIN_SIDE <= height <= MAX_SIDE):
        raise ValueError(f"size {text!r} is out of range: each side must be {MIN_SIDE}..{MAX_SIDE}")
    return width, height


def parse_openai_size(text: str) -> tuple[int, int]:
    """``1024x1024`` (or ``auto``) → pixels; anything else is a ``ValueError``."""
    if text == "auto":
        return 1024, 1024
    match = _OPENAI_SIZE.match(text)
    if match is None:
        raise ValueError(f"invalid size {text!r}: expected WIDTHxHEIGHT such as 1024x1024")
    return _checked(int(match[1]), int(match[2]), text)


def parse_dashscope_size(text: str) -> tuple[int, int]:
    """``1024*1024`` → pixels; anything else is a ``ValueError``."""
    match = _DASHSCOPE_SIZE.match(text)
    if match is None:
        raise ValueError(f"invalid size {text!r}: expected WIDTH*HEIGHT such as 1024*1024")
    return _checked(int(match[1]), int(match[2]), text)


def ratio_size(
    ratio: str | None, resolution: str | None
) -> tuple[tuple[int, int], tuple[int, int]]:
    """Gateway ``ratio``/``resolution`` → (pixels produced, nominal pixels).

    The nominal long edge is 1024 (``1k``, the default), 2048 (``2k``) or 4096 (``4k``);
    the image produced keeps the ratio with a long edge of at most 1024, so big
    resolutions stay cheap. Ask for an exact ``size`` to get exact pixels.
    """
    long_edge = _RESOLUTIONS.get((resolution or "1k").lower())
    if long_edge is None:
        raise ValueError(f"invalid resolution {resolution!r}: expected one of 1k, 2k, 4k")
    match = _RATIO.match(ratio or "1:1")
    if match is None or int(match[1]) == 0 or int(match[2]) == 0:
        raise ValueError(f"invalid ratio {ratio!r}: expected W:H such as 16:9")
    across, down = int(match[1]), int(match[2])

    def scaled(edge: int) -> tuple[int, int]:
        if across >= down:
            return edge, max(MIN_SIDE, round(edge * down / across))
        return max(MIN_SIDE, round(edge * across / down)), edge

    return scaled(min(long_edge, PREVIEW_LONG_EDGE)), scaled(long_edge)


def image_id(prompt: str) -> str:
    """The short ASCII id drawn on every image of ``prompt``."""
    return hashlib.sha256(prompt.encode()).hexdigest()[:8]


_FONT_DIRS = ("/usr/share/fonts", "/usr/local/share/fonts", "/Library/Fonts", "C:/Windows/Fonts")
_CJK_NAMES = (
    "notosanscjk",
    "notoserifcjk",
    "sourcehansans",
    "wqy",
    "droidsansfallback",
    "simhei",
    "msyh",
    "notosanssc",
)


@functools.cache
def cjk_font_path() -> str | None:
    """A font that draws Chinese, if one is installed (``REGEN_SIM_FONT`` overrides)."""
    override = os.environ.get("REGEN_SIM_FONT")
    if override:
        return override if Path(override).is_file() else None
    for root in _FONT_DIRS:
        base = Path(root)
        if not base.is_dir():
            continue
        for path in sorted(base.rglob("*")):
            name = path.name.lower().replace("-", "").replace("_", "")
            if path.suffix.lower() in {".ttf", ".ttc", ".otf"} and any(
                c in name for c in _CJK_NAMES
            ):
                return str(path)
    return None


@functools.cache
def _font(size: int, cjk: bool) -> ImageFont.FreeTypeFont | ImageFont.ImageFont:
    from PIL import ImageFont  # noqa: PLC0415 - Pillow loads only when an image is drawn

    path = cjk_font_path() if cjk else None
    if path is not None:
        return ImageFont.truetype(path, size)
    return ImageFont.load_default(size=size)


def _palette(digest: bytes) -> list[int]:
    """16 gradient bands between two colours, 8 shape colours, then black and white."""
    start, end = digest[0:3], digest[3:6]
    colours: list[int] = []
    for band in range(16):
        colours.extend(start[i] + (end[i] - start[i]) * band // 15 for i in range(3))
    for shape in range(8):
        colours.extend(digest[6 + 3 * shape + i] for i in range(3))
    colours.extend((0, 0, 0, 255, 255, 255))
    return colours


def _draw(prompt: str, width: int, height: int, variant: int = 0, frame: int = 0) -> Image.Image:
    from PIL import Image, ImageDraw  # noqa: PLC0415 - Pillow loads only when an image is drawn

    seed = prompt if not variant else f"{prompt}\x00{variant}"
    digest = hashlib.sha256(seed.encode()).digest()
    image = Image.new("P", (width, height), 0)
    image.putpalette(_palette(digest))
    draw = ImageDraw.Draw(image)
    band = height / 16
    for index in range(16):
        draw.rectangle((0, round(index * band), width, round((index + 1) * band)), fill=index)
    for shape in range(8):
        b = digest[(shape * 4 + frame) % 32 : (shape * 4 + frame) % 32 + 4].ljust(4, b"\0")
        x, y = b[0] * width // 255, b[1] * height // 255
        rx, ry = 8 + b[2] * width // 1020, 8 + b[3] * height // 1020
        box = (x - rx + frame * 8, y - ry, x + rx + frame * 8, y + ry)
        if shape % 2:
            draw.ellipse(box, fill=16 + shape)
        else:
            draw.rectangle(box, fill=16 + shape)
    _label(draw, prompt, width, height, variant)
    return image


def _label(draw: ImageDraw.ImageDraw, prompt: str, width: int, height: int, variant: int) -> None:
    size = max(10, min(width, height) // 24)
    strip = size * 3 + 8
    draw.rectangle((0, height - strip, width, height), fill=24)
    number = f"#{variant + 1} " if variant else ""
    tag = f"sim {image_id(prompt)} {number}{width}x{height}"
    draw.text((6, height - strip + 4), tag, fill=25, font=_font(size, cjk=False))
    text = " ".join(prompt.split())[: max(8, width // size)]
    cjk = not text.isascii()
    if cjk and cjk_font_path() is None:
        return  # no font here can draw it; the id still tells images apart
    draw.text((6, height - strip + 6 + size), text, fill=25, font=_font(size, cjk=cjk))


def render_png(prompt: str, width: int, height: int, variant: int = 0) -> bytes:
    """A valid PNG of exactly ``width`` x ``height``, the same bytes for the same prompt.

    ``variant`` tells apart the images of one request for ``n > 1``.
    """
    buffer = io.BytesIO()
    _draw(prompt, width, height, variant).save(buffer, "PNG", compress_level=1)
    return buffer.getvalue()


def render_gif(prompt: str, width: int, height: int, variant: int = 0, frames: int = 6) -> bytes:
    """A small animated GIF standing in for a generated video."""
    scale = min(1.0, 480 / max(width, height))
    size = (max(MIN_SIDE, round(width * scale)), max(MIN_SIDE, round(height * scale)))
    images = [_draw(prompt, *size, variant, frame) for frame in range(frames)]
    buffer = io.BytesIO()
    images[0].save(buffer, "GIF", save_all=True, append_images=images[1:], duration=200, loop=0)
    return buffer.getvalue()


_Key = tuple[str, str, int, int, int]


class ImageCache:
    """Rendered files by (kind, prompt, width, height, variant), drawn once in a thread."""

    def __init__(self, max_bytes: int = 256 * 1024 * 1024) -> None:
        self._max_bytes = max_bytes
        self._bytes = 0
        self._done: OrderedDict[_Key, bytes] = OrderedDict()
        self._pending: dict[_Key, asyncio.Future[bytes]] = {}

    async def get(self, kind: str, prompt: str, width: int, height: int, variant: int = 0) -> bytes:
        key = (kind, prompt, width, height, variant)
        data = self._done.get(key)
        if data is not None:
            self._done.move_to_end(key)
            return data
        pending = self._pending.get(key)
        if pending is None:
            render = render_gif if kind == "gif" else render_png
            loop = asyncio.get_running_loop()
            pending = loop.run_in_executor(None, render, prompt, width, height, variant)
            self._pending[key] = pending
            try:
                data = await pending
            finally:
                del self._pending[key]
            self._store(key, data)
            return data
        return await asyncio.shield(pending)

    def _store(self, key: _Key, data: bytes) -> None:
        self._done[key] = data
        self._bytes += len(data)
        while self._bytes > self._max_bytes and len(self._done) > 1:
            _, old = self._done.popitem(last=False)
            self._bytes -= len(old)
