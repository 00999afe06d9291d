"""The transport seam: one aiohttp session, no hidden retries, errors translated and bounded."""

from __future__ import annotations

import socket
import time

import pytest

from regen.providers import BadContent, Transport, TransportError, redact_url
from regen.retry import AttemptTimeout, GiveUp, Kind, Policy, classify
from regen.sim import SimServer

from .conftest import KEY, fault, requests

AUTH = {"Authorization": f"Bearer {KEY}"}


async def test_a_reset_get_is_one_request_not_two(sim: SimServer) -> None:
    # aiohttp resends an idempotent request once when the server drops the connection;
    # the transport turns that off so the retry policy alone decides.
    async with Transport() as transport:
        with pytest.raises(TransportError) as caught:
            await transport.request(
                "GET", f"{sim.openai_base_url}/models", headers={**AUTH, **fault("reset")}
            )
    assert caught.value.kind is Kind.CONNECTION
    assert caught.value.retry
    assert requests(sim, "models") == 1


async def test_a_refused_connection_provably_never_reached_the_server() -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    async with Transport() as transport:
        with pytest.raises(TransportError) as caught:
            await transport.request("GET", f"http://127.0.0.1:{port}/v1/models")
    failure = classify(caught.value)
    assert (failure.kind, failure.sent) == (Kind.CONNECTION, False)


async def test_outside_an_attempt_the_transport_timeout_applies(sim: SimServer) -> None:
    async with Transport(timeout=0.3) as transport:
        started = time.monotonic()
        with pytest.raises(TransportError) as caught:
            await transport.request(
                "GET", f"{sim.openai_base_url}/models", headers={**AUTH, **fault("hang")}
            )
    assert caught.value.kind is Kind.TIMEOUT
    assert time.monotonic() - started < 1.5


async def test_inside_an_attempt_the_attempt_timeout_cuts_first(sim: SimServer) -> None:
    async with Transport(timeout=60) as transport:
        policy = Policy(attempts=1, timeout=0.3)
        started = time.monotonic()
        with pytest.raises(GiveUp) as caught:
            await policy.acall(
                transport.request,
                "GET",
                f"{sim.openai_base_url}/models",
                headers={**AUTH, **fault("hang")},
            )
    assert isinstance(caught.value.__cause__, AttemptTimeout)
    assert time.monotonic() - started < 1.5


async def test_bodies_over_the_cap_are_refused(sim: SimServer) -> None:
    async with Transport() as transport:
        with pytest.raises(BadContent) as caught:
            await transport.request(
                "GET", f"{sim.openai_base_url}/models", headers=AUTH, max_bytes=10
            )
    assert caught.value.reason == "too_large"
    assert not caught.value.retry


async def test_one_session_serves_many_requests_and_reopens_after_close(sim: SimServer) -> None:
    transport = Transport()
    for _ in range(3):
        response = await transport.request("GET", f"{sim.openai_base_url}/models", headers=AUTH)
        assert response.status == 200
        assert response.content_type == "application/json"
    assert "open" in repr(transport)
    await transport.aclose()
    assert "idle" in repr(transport)
    response = await transport.request("GET", f"{sim.openai_base_url}/models", headers=AUTH)
    assert response.status == 200
    await transport.aclose()


def test_redact_url_drops_signatures_and_credentials() -> None:
    url = "https://user:pw@bucket.oss.example.com:8443/a/b.png?Expires=1&Signature=secret"
    assert redact_url(url) == "https://bucket.oss.example.com:8443/a/b.png"
