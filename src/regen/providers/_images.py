"""Is this really an image? Magic bytes, completeness, and size from the headers alone.

PNG, JPEG, WEBP and GIF are recognised and measured by reading their headers here, so
the core needs no imaging library. Anything else — an HTML error page, a 330-byte XML
``AccessDenied`` saved as ``.png``, an empty or cut-short body — is :class:`BadContent`.
"""

from __future__ import annotations

import hashlib
import struct
from dataclasses import dataclass

from regen.providers._errors import BadContent

_PNG = b"\x89PNG\r\n\x1a\n"
_PNG_END = b"IEND\xaeB`\x82"
_JPEG = b"\xff\xd8\xff"
_MEDIA_TYPES = {"png": "image/png", "jpeg": "image/jpeg", "webp": "image/webp", "gif": "image/gif"}
# JPEG start-of-frame markers carry the size; C4 (DHT), C8 (JPG) and CC (DAC) do not.
_SOF = frozenset(range(0xC0, 0xD0)) - {0xC4, 0xC8, 0xCC}


@dataclass(frozen=True, slots=True)
class ImageInfo:
    """What an image is: ``format`` (``"png"``…), pixel size, byte size and SHA-256."""

    format: str
    width: int | None
    height: int | None
    bytes: int
    sha256: str

    @property
    def media_type(self) -> str:
        """The image's MIME type (``"image/png"``)."""
        return _MEDIA_TYPES[self.format]

    @property
    def extension(self) -> str:
        """A file extension for it (``".png"``, ``".jpg"``)."""
        return ".jpg" if self.format == "jpeg" else f".{self.format}"

    def to_dict(self) -> dict[str, object]:
        """A JSON-ready form."""
        return {
            "format": self.format,
            "width": self.width,
            "height": self.height,
            "bytes": self.bytes,
            "sha256": self.sha256,
            "media_type": self.media_type,
        }


def sniff(data: bytes) -> str | None:
    """The image format the bytes start with, or ``None``."""
    if data.startswith(_PNG):
        return "png"
    if data.startswith(_JPEG):
        return "jpeg"
    if data[:4] == b"RIFF" and data[8:12] == b"WEBP":
        return "webp"
    if data[:6] in (b"GIF87a", b"GIF89a"):
        return "gif"
    return None


def _what_it_is(data: bytes) -> tuple[str, str]:
    """A reason code and a description for bytes that are not an image."""
    head = data[:512].lstrip().lower()
    if not data:
        return "empty", "an empty body"
    if head.startswith((b"<!doctype html", b"<html")) or b"<html" in head or b"<body" in head:
        return "html", "an HTML page"
    if head.startswith((b"<?xml", b"<error")) or b"<code>" in head:
        return "xml", "an XML document"
    if head.startswith((b"{", b"[")):
        return "json", "JSON"
    return "not_an_image", f"{len(data)} bytes of no known image format"


def image_info(data: bytes, *, source: str = "image", status: int | None = None) -> ImageInfo:
    """Check that ``data`` is a whole PNG/JPEG/WEBP/GIF and describe it.

    Raises :class:`BadContent` (reason ``empty``, ``html``, ``xml``, ``json``,
    ``not_an_image`` or ``truncated``; ``status``: the HTTP status it came with) otherwise.
    """
    fmt = sniff(data)
    if fmt is None:
        reason, described = _what_it_is(data)
        raise BadContent(f"{source}: got {described}, not an image", reason, status=status)
    if fmt == "png":
        size, whole = _png(data)
    elif fmt == "jpeg":
        size, whole = _jpeg(data)
    elif fmt == "webp":
        size, whole = _webp(data)
    else:
        size, whole = _gif(data)
    if not whole:
        raise BadContent(
            f"{source}: the {fmt.upper()} is cut short ({len(data)} bytes)",
            "truncated",
            status=status,
        )
    width, height = size if size is not None else (None, None)
    return ImageInfo(fmt, width, height, len(data), hashlib.sha256(data).hexdigest())


Size = tuple[int, int] | None


def _png(data: bytes) -> tuple[Size, bool]:
    size: Size = None
    if len(data) >= 24 and data[12:16] == b"IHDR":
        size = struct.unpack(">II", data[16:24])
    return size, data.rstrip(b"\x00").endswith(_PNG_END)


def _jpeg(data: bytes) -> tuple[Size, bool]:
    size: Size = None
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


def _webp(data: bytes) -> tuple[Size, bool]:
    (declared,) = struct.unpack("<I", data[4:8]) if len(data) >= 8 else (0,)
    whole = len(data) >= declared + 8 and len(data) > 12
    size: Size = None
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


def _gif(data: bytes) -> tuple[Size, bool]:
    size: Size = struct.unpack("<HH", data[6:10]) if len(data) >= 10 else None
    return size, data.rstrip(b"\x00").endswith(b"\x3b")
