"""Is this really an image? Magic bytes, completeness, and size from the headers alone.

PNG, JPEG, WEBP and GIF are recognised and measured by :mod:`regen.foundation` reading their
headers, so the core needs no imaging library. Anything else — an HTML error page, a 330-byte
XML ``AccessDenied`` saved as ``.png``, an empty or cut-short body — is :class:`BadContent`.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass

from regen.foundation import MEDIA_TYPES, measure_image
from regen.providers._errors import BadContent


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
        return MEDIA_TYPES[self.format]

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
    image = measure_image(data)
    if image is None:
        reason, described = _what_it_is(data)
        raise BadContent(f"{source}: got {described}, not an image", reason, status=status)
    if not image.whole:
        raise BadContent(
            f"{source}: the {image.format.upper()} is cut short ({len(data)} bytes)",
            "truncated",
            status=status,
        )
    return ImageInfo(
        image.format, image.width, image.height, len(data), hashlib.sha256(data).hexdigest()
    )
