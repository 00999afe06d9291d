"""The safe downloader: real images pass, error pages, cut bodies and expired URLs don't."""

from __future__ import annotations

import io
import os
import stat
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from PIL import Image as PILImage

from regen.providers import (
    APIError,
    BadContent,
    OpenAIProvider,
    Transport,
    download_image,
    image_from_bytes,
)
from regen.retry import AttemptTimeout, Kind, Policy, classify
from regen.sim import SimServer

from .conftest import fault, requests


async def image_url(openai: OpenAIProvider, spec: str | None = None) -> str:
    headers = fault(spec) if spec else None
    image = await openai.generate_image("a blue bird", headers=headers, size="256x256")
    assert image.url is not None
    return image.url


async def test_a_real_image_downloads_with_its_metadata(
    openai: OpenAIProvider, sim: SimServer, tmp_path: Path
) -> None:
    url = await image_url(openai)
    image = await download_image(url, transport=openai.transport)
    assert (image.info.format, image.info.width, image.info.height) == ("png", 256, 256)
    assert image.info.bytes == len(image.data)
    assert image.content_type == "image/png"
    saved = image.save(tmp_path)
    assert saved.name == f"{image.info.sha256}.png"
    assert saved.read_bytes() == image.data
    assert requests(sim, "file") == 1


@pytest.mark.parametrize(
    ("spec", "reason", "status"),
    [
        ("url_expired", "url_expired", 403),
        ("fake_image", "xml", 200),  # ~330 bytes of XML labelled image/png
        ("fake_image:xml", "xml", 200),
        ("fake_image:html", "html", 200),
        ("truncated_image", "truncated", None),  # fewer bytes than Content-Length
        ("truncated_image:png", "truncated", None),  # a PNG cut in half, length consistent
    ],
)
async def test_what_is_not_a_whole_image_is_bad_content(
    openai: OpenAIProvider, sim: SimServer, spec: str, reason: str, status: int | None
) -> None:
    url = await image_url(openai, spec)
    with pytest.raises(BadContent) as caught:
        await download_image(url, transport=openai.transport)
    assert caught.value.reason == reason
    failure = classify(caught.value)
    assert (failure.kind, failure.retry) == (Kind.BAD_CONTENT, True)
    if status is not None:
        assert failure.status == status
    assert requests(sim, "file") == 1


async def test_an_expired_url_reads_as_such(openai: OpenAIProvider) -> None:
    url = await image_url(openai, "url_expired")
    with pytest.raises(BadContent, match="expired"):
        await download_image(url, transport=openai.transport)


async def test_the_size_cap_is_not_worth_a_retry(openai: OpenAIProvider) -> None:
    url = await image_url(openai)
    with pytest.raises(BadContent) as caught:
        await download_image(url, transport=openai.transport, max_bytes=100)
    assert caught.value.reason == "too_large"
    assert not classify(caught.value).retry


async def test_a_hung_download_times_out_by_its_own_timeout(openai: OpenAIProvider) -> None:
    url = await image_url(openai)
    started = time.monotonic()
    with pytest.raises(AttemptTimeout) as caught:
        await download_image(url, transport=openai.transport, headers=fault("hang"), timeout=0.3)
    assert caught.value.phase == "download"
    assert 0.3 <= time.monotonic() - started < 1.5
    assert classify(caught.value).kind is Kind.TIMEOUT


async def test_the_policy_download_phase_bounds_the_download(openai: OpenAIProvider) -> None:
    url = await image_url(openai)
    policy = Policy(attempts=1, timeout=10, phases={"download": 0.3})
    started = time.monotonic()
    with pytest.raises(Exception) as caught:  # noqa: PT011 - GiveUp wraps the timeout
        await policy.acall(download_image, url, transport=openai.transport, headers=fault("hang"))
    assert isinstance(caught.value.__cause__, AttemptTimeout)
    assert time.monotonic() - started < 1.5


async def test_a_server_error_from_the_image_host_is_retryable(openai: OpenAIProvider) -> None:
    url = await image_url(openai)
    with pytest.raises(APIError) as caught:
        await download_image(url, transport=openai.transport, headers=fault("server_error"))
    assert (caught.value.kind, caught.value.retry) == (Kind.SERVER_ERROR, True)


async def test_a_missing_file_is_bad_content(sim: SimServer) -> None:
    async with Transport() as transport:
        with pytest.raises(BadContent) as caught:
            await download_image(f"{sim.url}/files/nothing.png", transport=transport)
    assert caught.value.reason == "http_404"


async def test_without_a_transport_one_is_opened_and_closed(openai: OpenAIProvider) -> None:
    url = await image_url(openai)
    image = await download_image(url)
    assert image.info.format == "png"


def test_bytes_in_hand_are_checked_the_same_way() -> None:
    with pytest.raises(BadContent):
        image_from_bytes(b"<html>nope</html>")


@pytest.fixture
def png() -> bytes:
    buffer = io.BytesIO()
    PILImage.new("RGB", (8, 6)).save(buffer, "PNG")
    return buffer.getvalue()


@pytest.fixture
def umask() -> Iterator[None]:
    """Each test sets the umask it needs; the process's is restored after."""
    before = os.umask(0o022)
    try:
        yield
    finally:
        os.umask(before)


def test_save_to_a_path_ending_with_a_separator_creates_the_folder(
    png: bytes, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    image = image_from_bytes(png)
    saved = image.save("assets/")
    assert saved == Path("assets") / f"{image.info.sha256}.png"
    assert (tmp_path / "assets").is_dir()
    assert saved.read_bytes() == png
    again = image.save(tmp_path / "assets")  # an existing folder, written without the slash
    assert again == tmp_path / saved
    assert sorted(p.name for p in (tmp_path / "assets").iterdir()) == [saved.name]


def test_save_to_a_file_path_creates_its_folders_and_writes_that_file(
    png: bytes, tmp_path: Path
) -> None:
    saved = image_from_bytes(png).save(tmp_path / "posts" / "2026-01-02" / "cover.png")
    assert saved == tmp_path / "posts" / "2026-01-02" / "cover.png"
    assert saved.read_bytes() == png
    assert [p.name for p in saved.parent.iterdir()] == ["cover.png"]  # no temporary left


@pytest.mark.parametrize(
    ("mask", "mode"), [(0o022, 0o644), (0o027, 0o640), (0o002, 0o664)], ids=lambda v: f"{v:04o}"
)
def test_a_saved_image_has_the_permissions_the_umask_gives(
    png: bytes, tmp_path: Path, umask: None, mask: int, mode: int
) -> None:
    os.umask(mask)
    saved = image_from_bytes(png).save(tmp_path / "out/")
    assert stat.S_IMODE(saved.stat().st_mode) == mode
