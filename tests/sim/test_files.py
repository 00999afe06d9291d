"""Image downloads: real PNGs, and the image faults on the later GET of the image URL."""

from __future__ import annotations

import base64
import io

import httpx
import pytest
from PIL import Image

from regen.sim import SimServer

AUTH = {"Authorization": "Bearer sk-test"}


def image_url(sim: SimServer, prompt: str = "a red fox", fault: str | None = None) -> str:
    headers = {**AUTH, "X-Regen-Fault": fault} if fault else AUTH
    response = httpx.post(
        f"{sim.openai_base_url}/images/generations",
        json={"prompt": prompt, "size": "256x256"},
        headers=headers,
    )
    response.raise_for_status()
    url: str = response.json()["data"][0]["url"]
    return url


def test_download_is_a_valid_png(sim: SimServer) -> None:
    response = httpx.get(image_url(sim))
    assert response.status_code == 200
    assert response.headers["content-type"] == "image/png"
    assert int(response.headers["content-length"]) == len(response.content)
    assert Image.open(io.BytesIO(response.content)).size == (256, 256)
    assert sim.stats()["prompts"]["a red fox"]["routes"] == {"images": 1, "file": 1}


def test_url_expired_is_403_xml_access_denied(sim: SimServer) -> None:
    url = image_url(sim, fault="url_expired")
    assert "Expires=" in url
    response = httpx.get(url)
    assert response.status_code == 403
    assert response.headers["content-type"] == "application/xml"
    assert b"<Code>AccessDenied</Code>" in response.content
    assert b"Request has expired." in response.content
    assert sim.stats()["faults"] == {"url_expired": 2}  # at generation, and at the GET


def test_fake_image_is_a_small_xml_labelled_png(sim: SimServer) -> None:
    response = httpx.get(image_url(sim, fault="fake_image"))
    assert response.status_code == 200
    assert response.headers["content-type"] == "image/png"
    assert 250 < len(response.content) < 400
    assert response.content.startswith(b"<?xml")


@pytest.mark.parametrize(
    ("variant", "content_type"), [("html", "text/html"), ("xml", "application/xml")]
)
def test_fake_image_variants(sim: SimServer, variant: str, content_type: str) -> None:
    response = httpx.get(image_url(sim, fault=f"fake_image:{variant}"))
    assert response.status_code == 200
    assert response.headers["content-type"].startswith(content_type)


def test_truncated_image_sends_less_than_content_length(sim: SimServer) -> None:
    with pytest.raises(httpx.RemoteProtocolError):
        httpx.get(image_url(sim, fault="truncated_image"))


def test_truncated_image_png_variant_is_a_png_cut_short(sim: SimServer) -> None:
    whole = httpx.get(image_url(sim)).content
    response = httpx.get(image_url(sim, fault="truncated_image:png"))
    assert response.status_code == 200
    assert response.content == whole[: len(whole) // 2]
    with pytest.raises(OSError, match=r"truncated|broken"):
        Image.open(io.BytesIO(response.content)).load()


def test_image_fault_on_the_get_itself(sim: SimServer) -> None:
    url = image_url(sim)
    assert httpx.get(url, headers={"X-Regen-Fault": "fake_image"}).content.startswith(b"<?xml")
    assert httpx.get(url).content.startswith(b"\x89PNG")


def test_b64_json_carries_the_image_fault_in_its_bytes(sim: SimServer) -> None:
    response = httpx.post(
        f"{sim.openai_base_url}/images/generations",
        json={"prompt": "a fox", "size": "256x256", "response_format": "b64_json"},
        headers={**AUTH, "X-Regen-Fault": "fake_image"},
    )
    assert base64.b64decode(response.json()["data"][0]["b64_json"]).startswith(b"<?xml")


@pytest.mark.parametrize(("fault", "status"), [("server_error", 500), ("overloaded", 503)])
def test_storage_errors_are_xml(sim: SimServer, fault: str, status: int) -> None:
    response = httpx.get(image_url(sim), headers={"X-Regen-Fault": fault})
    assert response.status_code == status
    assert response.headers["content-type"] == "application/xml"


def test_unknown_file_is_404_no_such_key(sim: SimServer) -> None:
    response = httpx.get(f"{sim.url}/files/nope.png")
    assert response.status_code == 404
    assert b"NoSuchKey" in response.content


def test_hang_on_download_times_out(sim: SimServer) -> None:
    with pytest.raises(httpx.ReadTimeout):
        httpx.get(image_url(sim), headers={"X-Regen-Fault": "hang"}, timeout=0.3)


def test_reset_on_download_is_connection_reset_by_peer(sim: SimServer) -> None:
    with pytest.raises(httpx.ReadError, match="reset"):
        httpx.get(image_url(sim), headers={"X-Regen-Fault": "reset"})
