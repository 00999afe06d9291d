"""What bytes hold: an image's format, pixel size and completeness, read from its header.

PNG, JPEG, WebP and GIF are recognised and measured here without an imaging library: a
few header bytes say what they are and how large; the last bytes say whether the file was
cut short.
"""

from __future__ import annotations

import struct
from typing import NamedTuple

#: MIME types of the image formats :func:`sniff` recognises.
MEDIA_TYPES = {"png": "image/png", "jpeg": "image/jpeg", "webp": "image/webp", "gif": "image/gif"}

_PNG = b"\x89PNG\r\n\x1a\n"
_PNG_END = b"IEND\xaeB`\x82"
_JPEG = b"\xff\xd8\xff"
# JPEG start-of-frame markers carry the size; C4 (DHT), C8 (JPG) and CC (DAC) do not.
_SOF = frozenset(range(0xC0, 0xD0)) - {0xC4, 0xC8, 0xCC}

_Size = tuple[int, int] | None


class MeasuredImage(NamedTuple):
    """An image's ``format`` (``"png"``…), pixel size (``None`` when its header does not
    say) and whether its bytes are ``whole`` (not cut short)."""

    format: str
    width: int | None
    height: int | None
    whole: bool


def sniff(data: bytes) -> str | None:
    """The image format the bytes start with (``"png"``, ``"jpeg"``, ``"webp"``, ``"gif"``),
    or ``None``."""
    if data.startswith(_PNG):
        return "png"
    if data.startswith(_JPEG):
        return "jpeg"
    if data[:4] == b"RIFF" and data[8:12] == b"WEBP":
        return "webp"
    if data[:6] in (b"GIF87a", b"GIF89a"):
        return "gif"
    return None


def measure_image(data: bytes) -> MeasuredImage | None:
    """The image's format, size and completeness, or ``None`` when it is not an image."""
    fmt = sniff(data)
    if fmt is None:
        return None
    size, whole = _MEASURES[fmt](data)
    width, height = size if size is not None else (None, None)
    return MeasuredImage(fmt, width, height, whole)


def media_info(data: bytes) -> tuple[str, int | None, int | None]:
    """``(content_type, width, height)`` of stored bytes; sizes are ``None`` for anything
    but an image whose header gives them."""
    image = measure_image(data)
    if image is not None:
        return MEDIA_TYPES[image.format], image.width, image.height
    if data.lstrip()[:1] in (b"{", b"["):
        return "application/json", None, None
    return "application/octet-stream", None, None


def _png(data: bytes) -> tuple[_Size, bool]:
    size: _Size = None
    if len(data) >= 24 and data[12:16] == b"IHDR":
        size = struct.unpack(">II", data[16:24])
    return size, data.rstrip(b"\x00").endswith(_PNG_END)


def _jpeg(data: bytes) -> tuple[_Size, bool]:
    size: _Size = None
    pos = 2
    while pos + 4 <= len(data):
        if data[pos] != 0xFF:
            pos += 1
            continue
        marker = data[pos + 1]
        if marker == 0xFF:  # fill byte
            pos += 1
            continue
        if marker in (0xD8, 0x01) or 0xD0 <= marker <= 0xD7:
            pos += 2
            continue
        if marker == 0xDA:  # start of scan: entropy-coded data follows
            break
        (length,) = struct.unpack(">H", data[pos + 2 : pos + 4])
        if marker in _SOF and pos + 9 <= len(data):
            height, width = struct.unpack(">HH", data[pos + 5 : pos + 9])
            size = (width, height)
            break
        pos += 2 + length
    # Inside entropy-coded data 0xFF is stuffed, so an FFD9 after the last start-of-scan
    # is the end-of-image marker: without one, the file was cut.
    whole = data.rfind(b"\xff\xd9") > data.rfind(b"\xff\xda")
    return size, whole


def _webp(data: bytes) -> tuple[_Size, bool]:
    (declared,) = struct.unpack("<I", data[4:8]) if len(data) >= 8 else (0,)
    whole = len(data) >= declared + 8 and len(data) > 12
    size: _Size = None
    chunk = data[12:16]
    if chunk == b"VP8 " and len(data) >= 30:
        width, height = struct.unpack("<HH", data[26:30])
        size = (width & 0x3FFF, height & 0x3FFF)
    elif chunk == b"VP8L" and len(data) >= 25:
        bits = int.from_bytes(data[21:25], "little")
        size = ((bits & 0x3FFF) + 1, ((bits >> 14) & 0x3FFF) + 1)
    elif chunk == b"VP8X" and len(data) >= 30:
        size = (
            int.from_bytes(data[24:27], "little") + 1,
            int.from_bytes(data[27:30], "little") + 1,
        )
    return size, whole


def _gif(data: bytes) -> tuple[_Size, bool]:
    size: _Size = struct.unpack("<HH", data[6:10]) if len(data) >= 10 else None
    return size, data.rstrip(b"\x00").endswith(b"\x3b")


_MEASURES = {"png": _png, "jpeg": _jpeg, "webp": _webp, "gif": _gif}
