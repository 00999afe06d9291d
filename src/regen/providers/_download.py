"""A safe image downloader: bounded in time and size, and sure it got an image.

Time: the ``download`` phase of the current attempt (a policy's ``phases["download"]``,
``…_DOWNLOAD_TIMEOUT_S`` in :meth:`Policy.from_env`), never more than the attempt has
left. Size: a cap, checked against ``Content-Length`` before reading and while reading.
Content: the bytes must be a whole PNG/JPEG/WEBP/GIF of the length announced; anything
else — HTML or XML error pages, empty or cut-short bodies, an expired signed URL's
``403 AccessDenied`` — is :class:`BadContent`, which an image pipeline answers by
generating a new image rather than fetching the same URL again.
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

from regen.foundation import new_temp_file
from regen.providers._errors import APIError, BadContent, TransportError
from regen.providers._images import ImageInfo, image_info
from regen.providers._transport import Transport, redact_url
from regen.retry import AttemptTimeout, classify_response, phase_timeout

#: Images larger than this are refused unless the caller raises the cap.
DEFAULT_MAX_BYTES = 50 * 1024 * 1024
#: The download phase's timeout when the policy names none (the daily-news example's
#: ``…_DOWNLOAD_TIMEOUT_S`` default).
DEFAULT_DOWNLOAD_TIMEOUT = 60.0
_SLACK = 0.25


@dataclass(frozen=True, slots=True)
class Image:
    """Image bytes with what they are and where they came from."""

    data: bytes = field(repr=False)
    info: ImageInfo
    url: str | None = None
    content_type: str | None = None

    def save(self, path: str | os.PathLike[str]) -> Path:
        """Write the image to ``path`` and return where it went.

        A path that names a folder — an existing directory, or one ending with a separator
        (``"assets/"``) — gets the folder created if need be and the image written in it,
        named by its SHA-256 and format (``assets/3f2a….png``); any other path is the
        file's. Missing parent folders are created. The file appears whole or not at all
        (written aside, then renamed), with the permissions the umask gives new files.
        """
        target = Path(path)
        if _names_folder(path) or target.is_dir():
            target = target / f"{self.info.sha256}{self.info.extension}"
        target.parent.mkdir(parents=True, exist_ok=True)
        fd, temp = new_temp_file(target.parent)
        try:
            with os.fdopen(fd, "wb") as handle:
                handle.write(self.data)
            temp.replace(target)
        except BaseException:
            temp.unlink(missing_ok=True)
            raise
        return target


def _names_folder(path: str | os.PathLike[str]) -> bool:
    """Whether ``path`` is written as a folder: ``"assets/"`` (``Path`` drops the slash)."""
    text = os.fspath(path)
    return text.endswith(tuple(sep for sep in (os.sep, os.altsep) if sep))


def image_from_bytes(
    data: bytes, *, url: str | None = None, content_type: str | None = None
) -> Image:
    """An :class:`Image` from bytes already in hand (``b64_json`` replies); checked the same way."""
    return Image(data, image_info(data, source="image data"), url, content_type)


async def download_image(
    url: str,
    *,
    transport: Transport | None = None,
    max_bytes: int = DEFAULT_MAX_BYTES,
    timeout: float | None = None,  # noqa: ASYNC109 - the download phase's default, see below
    headers: Mapping[str, str] | None = None,
) -> Image:
    """Download and check one image (one try: retrying is the caller's policy's job).

    ``timeout`` bounds the download when the current policy names no ``download`` phase
    (default 60 s); either way the attempt's remaining time bounds it too. A timeout
    raises :class:`AttemptTimeout` with ``phase="download"``.
    """
    limit = phase_timeout("download", DEFAULT_DOWNLOAD_TIMEOUT if timeout is None else timeout)
    assert limit is not None  # a default was given
    if timeout is not None:
        limit = min(limit, timeout)
    limit = max(limit, 0.001)
    own = transport is None
    client = transport or Transport()
    shown = redact_url(url)
    try:
        try:
            async with asyncio.timeout(limit):
                response = await client.request(
                    "GET", url, headers=headers, timeout=limit + _SLACK, max_bytes=max_bytes
                )
        except TimeoutError:
            raise AttemptTimeout(limit, phase="download") from None
        except TransportError as exc:
            if exc.reason == "ClientPayloadError":
                raise BadContent(f"{shown}: body cut short ({exc})", "truncated") from exc
            raise
    finally:
        if own:
            await client.aclose()
    body = response.body
    if response.status >= 400:
        raise _error(shown, response.status, response.headers, body)
    length = response.headers.get("Content-Length")
    # A compressed body is decoded on the way in: its Content-Length counts other bytes.
    encoded = response.headers.get("Content-Encoding", "identity").lower() != "identity"
    if length is not None and length.isdigit() and not encoded and int(length) != len(body):
        raise BadContent(
            f"{shown}: got {len(body)} of the {length} bytes announced",
            "truncated",
            status=response.status,
        )
    info = image_info(body, source=shown, status=response.status)
    return Image(body, info, url, response.content_type or None)


def _error(shown: str, status: int, headers: Mapping[str, str], body: bytes) -> Exception:
    lowered = body[:2048].lower()
    if status == 403 and (b"accessdenied" in lowered or b"expired" in lowered):
        return BadContent(
            f"{shown}: HTTP 403, the signed URL has expired or was refused",
            "url_expired",
            status=status,
        )
    if status == 429 or status >= 500:
        failure = classify_response(status, headers, body)
        assert failure is not None
        return APIError(f"{shown}: HTTP {status} from the image host", failure)
    return BadContent(
        f"{shown}: HTTP {status}, the URL no longer serves the image",
        f"http_{status}",
        status=status,
    )
