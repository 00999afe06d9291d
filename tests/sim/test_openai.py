"""The official ``openai`` SDK against the simulator: happy paths and every OpenAI fault."""

from __future__ import annotations

import base64
import io
import time
from collections.abc import AsyncIterator, Iterator

import httpx
import openai
import pytest
from openai import AsyncOpenAI, OpenAI
from PIL import Image

from regen.sim import SimConfig, SimServer, create_app, run_simulator

MESSAGES = [{"role": "user", "content": "Tell me about lighthouses"}]


@pytest.fixture
def client(sim: SimServer) -> Iterator[OpenAI]:
    with OpenAI(base_url=sim.openai_base_url, api_key="sk-test", max_retries=0, timeout=5) as c:
        yield c


@pytest.fixture
async def aclient(sim: SimServer) -> AsyncIterator[AsyncOpenAI]:
    async with AsyncOpenAI(
        base_url=sim.openai_base_url, api_key="sk-test", max_retries=0, timeout=5
    ) as c:
        yield c


def fault(name: str) -> dict[str, dict[str, str]]:
    return {"extra_headers": {"X-Regen-Fault": name}}


# --- happy paths ----------------------------------------------------------------------


def test_chat_completion_is_deterministic_per_prompt(client: OpenAI, sim: SimServer) -> None:
    first = client.chat.completions.create(model="gpt-4o-mini", messages=MESSAGES)
    second = client.chat.completions.create(model="gpt-4o-mini", messages=MESSAGES)
    assert first.object == "chat.completion"
    assert first.choices[0].finish_reason == "stop"
    assert first.choices[0].message.role == "assistant"
    assert "lighthouses" in (first.choices[0].message.content or "")
    assert first.choices[0].message.content == second.choices[0].message.content
    assert first.usage is not None
    assert first.usage.completion_tokens > 0
    prompt = sim.stats()["prompts"]["Tell me about lighthouses"]
    assert prompt["produced"] == 2
    assert prompt["routes"] == {"chat": 2}


def test_streaming_chat_arrives_word_by_word_and_ends_with_stop(client: OpenAI) -> None:
    plain = client.chat.completions.create(model="sim", messages=MESSAGES)
    stream = client.chat.completions.create(model="sim", messages=MESSAGES, stream=True)
    chunks = list(stream)
    assert all(chunk.object == "chat.completion.chunk" for chunk in chunks)
    words = [c.choices[0].delta.content for c in chunks if c.choices and c.choices[0].delta.content]
    assert len(words) > 10
    assert "".join(words) == plain.choices[0].message.content
    assert chunks[-1].choices[0].finish_reason == "stop"


def test_stream_usage_chunk_when_asked(client: OpenAI) -> None:
    chunks = list(
        client.chat.completions.create(
            model="sim", messages=MESSAGES, stream=True, stream_options={"include_usage": True}
        )
    )
    assert chunks[-1].choices == []
    assert chunks[-1].usage is not None
    assert chunks[-1].usage.total_tokens > 0


def test_max_tokens_cuts_the_reply_with_finish_reason_length(client: OpenAI) -> None:
    reply = client.chat.completions.create(model="sim", messages=MESSAGES, max_tokens=3)
    assert reply.choices[0].finish_reason == "length"
    assert len((reply.choices[0].message.content or "").split()) == 3


def test_models_list_names_the_known_models(client: OpenAI, sim: SimServer) -> None:
    ids = {model.id for model in client.models.list()}
    assert {"sim", "gpt-4o-mini", "deepseek-chat", "qwen-plus", "dall-e-3", "wanx-v1"} <= ids


def test_compatible_mode_prefix_speaks_the_same_protocol(sim: SimServer) -> None:
    with OpenAI(base_url=sim.compatible_base_url, api_key="sk-x", max_retries=0) as c:
        reply = c.chat.completions.create(model="qwen-plus", messages=MESSAGES)
    assert reply.choices[0].message.content


def test_image_url_downloads_a_png_of_the_requested_size(client: OpenAI, sim: SimServer) -> None:
    result = client.images.generate(model="dall-e-3", prompt="a red fox", size="1792x1024")
    assert result.data
    assert result.data[0].url
    assert result.data[0].revised_prompt == "a red fox"
    response = httpx.get(result.data[0].url)
    assert response.headers["content-type"] == "image/png"
    image = Image.open(io.BytesIO(response.content))
    assert image.format == "PNG"
    assert image.size == (1792, 1024)
    assert sim.stats()["prompts"]["a red fox"]["produced"] == 1


def test_image_b64_json_is_the_same_png_as_the_url(client: OpenAI) -> None:
    b64 = client.images.generate(prompt="a red fox", size="512x512", response_format="b64_json")
    url = client.images.generate(prompt="a red fox", size="512x512")
    assert b64.data
    assert url.data
    assert b64.data[0].b64_json
    assert url.data[0].url
    raw = base64.b64decode(b64.data[0].b64_json)
    assert Image.open(io.BytesIO(raw)).size == (512, 512)
    assert httpx.get(url.data[0].url).content == raw


def test_several_images_differ_from_each_other(client: OpenAI) -> None:
    result = client.images.generate(
        prompt="two cats", n=2, size="256x256", response_format="b64_json"
    )
    assert result.data
    assert len(result.data) == 2
    assert result.data[0].b64_json != result.data[1].b64_json


def test_gateway_ratio_and_resolution(client: OpenAI) -> None:
    result = client.images.generate(
        prompt="a wide valley",
        model="jimeng-4.0",
        extra_body={"ratio": "16:9", "resolution": "2k", "negative_prompt": "fog"},
    )
    assert result.data
    assert result.data[0].url
    image = Image.open(io.BytesIO(httpx.get(result.data[0].url).content))
    assert image.size == (1024, 576)  # the ratio, at preview size (see docs/simulator.md)
    assert result.model_extra is not None
    assert result.model_extra["nominal_size"] == "2048x1152"


async def test_async_client_chat_stream_and_images(aclient: AsyncOpenAI) -> None:
    reply = await aclient.chat.completions.create(model="deepseek-chat", messages=MESSAGES)
    assert reply.choices[0].message.content
    stream = await aclient.chat.completions.create(model="sim", messages=MESSAGES, stream=True)
    text = "".join([c.choices[0].delta.content or "" async for c in stream if c.choices])
    assert text == reply.choices[0].message.content
    images = await aclient.images.generate(prompt="a boat", response_format="b64_json")
    assert images.data
    assert images.data[0].b64_json


# --- refusals -------------------------------------------------------------------------


def test_missing_key_is_401(sim: SimServer) -> None:
    response = httpx.post(f"{sim.openai_base_url}/chat/completions", json={"model": "sim"})
    assert response.status_code == 401
    assert response.json()["error"]["type"] == "invalid_request_error"


def test_configured_keys_refuse_other_keys() -> None:
    with run_simulator(keys=("sk-good",)) as server:
        with OpenAI(base_url=server.openai_base_url, api_key="sk-bad", max_retries=0) as bad:
            with pytest.raises(openai.AuthenticationError) as caught:
                bad.models.list()
            assert caught.value.code == "invalid_api_key"
            assert "sk-bad" not in str(caught.value)
        with OpenAI(base_url=server.openai_base_url, api_key="sk-good", max_retries=0) as good:
            assert list(good.models.list())


def test_unknown_model_is_404_model_not_found(client: OpenAI) -> None:
    with pytest.raises(openai.NotFoundError) as caught:
        client.chat.completions.create(model="gpt-99", messages=MESSAGES)
    assert caught.value.code == "model_not_found"


def test_missing_prompt_is_400_invalid_request_error(client: OpenAI) -> None:
    with pytest.raises(openai.BadRequestError) as caught:
        client.images.generate(prompt="")
    assert caught.value.status_code == 400
    assert caught.value.body["type"] == "invalid_request_error"  # type: ignore[index]
    assert caught.value.param == "prompt"


def test_bad_size_is_400_with_param_size(client: OpenAI) -> None:
    with pytest.raises(openai.BadRequestError) as caught:
        client.images.generate(prompt="a fox", size="huge")  # type: ignore[arg-type]
    assert caught.value.param == "size"


def test_missing_messages_is_400(client: OpenAI) -> None:
    with pytest.raises(openai.BadRequestError) as caught:
        client.chat.completions.create(model="sim", messages=[])
    assert caught.value.param == "messages"


# --- faults, as the SDK sees them ------------------------------------------------------


@pytest.mark.parametrize(
    ("name", "error", "code"),
    [
        ("auth", openai.AuthenticationError, "invalid_api_key"),
        ("permission", openai.PermissionDeniedError, "unsupported_country_region_territory"),
        ("quota", openai.RateLimitError, "insufficient_quota"),
        ("server_error", openai.InternalServerError, None),
        ("overloaded", openai.InternalServerError, None),
        ("content_policy", openai.BadRequestError, "content_policy_violation"),
        ("invalid_param", openai.BadRequestError, "invalid_value"),
        ("unknown_model", openai.NotFoundError, "model_not_found"),
    ],
)
def test_status_faults_raise_the_sdk_error(
    client: OpenAI, sim: SimServer, name: str, error: type[openai.APIStatusError], code: str | None
) -> None:
    with pytest.raises(error) as caught:
        client.chat.completions.create(model="sim", messages=MESSAGES, **fault(name))
    assert caught.value.code == code
    assert sim.stats()["faults"] == {name: 1}


def test_rate_limit_carries_retry_after_and_quota_headers(client: OpenAI) -> None:
    with pytest.raises(openai.RateLimitError) as caught:
        client.chat.completions.create(model="sim", messages=MESSAGES, **fault("rate_limit:3"))
    headers = caught.value.response.headers
    assert caught.value.code == "rate_limit_exceeded"
    assert headers["retry-after"] == "3"
    assert headers["retry-after-ms"] == "3000"
    assert headers["x-ratelimit-limit-requests"] == "10000"
    assert "x-ratelimit-remaining-requests" in headers


def test_rate_limit_retry_after_as_http_date(client: OpenAI) -> None:
    with pytest.raises(openai.RateLimitError) as caught:
        client.chat.completions.create(model="sim", messages=MESSAGES, **fault("rate_limit:date"))
    assert caught.value.response.headers["retry-after"].endswith("GMT")


def test_normal_responses_report_remaining_quota(client: OpenAI) -> None:
    first = client.chat.completions.with_raw_response.create(model="sim", messages=MESSAGES)
    second = client.chat.completions.with_raw_response.create(model="sim", messages=MESSAGES)
    remaining = [int(r.headers["x-ratelimit-remaining-requests"]) for r in (first, second)]
    assert remaining[0] - remaining[1] == 1
    assert first.headers["x-ratelimit-limit-requests"] == "10000"


def test_retry_after_long_says_300(client: OpenAI) -> None:
    with pytest.raises(openai.RateLimitError) as caught:
        client.chat.completions.create(model="sim", messages=MESSAGES, **fault("retry_after_long"))
    assert caught.value.response.headers["retry-after"] == "300"


def test_rate_limit_burst_rejects_k_requests_in_a_row_without_retry_after(
    client: OpenAI, sim: SimServer
) -> None:
    with pytest.raises(openai.RateLimitError) as caught:
        client.chat.completions.create(
            model="sim", messages=MESSAGES, **fault("rate_limit_burst:3")
        )
    assert "retry-after" not in caught.value.response.headers
    for _ in range(2):  # the next two, without any header, are still refused
        with pytest.raises(openai.RateLimitError):
            client.chat.completions.create(model="sim", messages=MESSAGES)
    assert client.chat.completions.create(model="sim", messages=MESSAGES).choices
    assert sim.stats()["routes"]["chat"]["outcomes"] == {"rate_limit_burst": 3, "ok": 1}


def test_deepseek_quota_is_402_insufficient_balance(client: OpenAI) -> None:
    with pytest.raises(openai.APIStatusError) as caught:
        client.chat.completions.create(model="deepseek-chat", messages=MESSAGES, **fault("quota"))
    assert caught.value.status_code == 402
    assert caught.value.message.endswith("Insufficient Balance")


def test_bad_gateway_html_is_a_502_html_page(client: OpenAI) -> None:
    with pytest.raises(openai.InternalServerError) as caught:
        client.chat.completions.create(model="sim", messages=MESSAGES, **fault("bad_gateway_html"))
    assert caught.value.status_code == 502
    assert caught.value.response.headers["content-type"].startswith("text/html")


def test_html_200_comes_back_as_a_str(client: OpenAI) -> None:
    result = client.chat.completions.create(model="sim", messages=MESSAGES, **fault("html_200"))
    assert isinstance(result, str)
    assert "<html" in result


def test_empty_choices(client: OpenAI) -> None:
    result = client.chat.completions.create(
        model="sim", messages=MESSAGES, **fault("empty_choices")
    )
    assert result.choices == []


def test_missing_fields_on_images_has_no_data(client: OpenAI) -> None:
    result = client.images.generate(prompt="a fox", **fault("missing_fields"))
    assert result.data is None


def test_hang_times_out_on_the_client(client: OpenAI, sim: SimServer) -> None:
    with pytest.raises(openai.APITimeoutError):
        client.chat.completions.create(model="sim", messages=MESSAGES, timeout=0.3, **fault("hang"))
    assert sim.stats()["faults"] == {"hang": 1}


def test_slow_answers_late(client: OpenAI) -> None:
    with pytest.raises(openai.APITimeoutError):
        client.chat.completions.create(model="sim", messages=MESSAGES, timeout=0.2, **fault("slow"))
    reply = client.chat.completions.create(
        model="sim", messages=MESSAGES, timeout=2, **fault("slow:0.05")
    )
    assert reply.choices


def test_reset_is_a_connection_error(client: OpenAI) -> None:
    with pytest.raises(openai.APIConnectionError) as caught:
        client.chat.completions.create(model="sim", messages=MESSAGES, **fault("reset"))
    assert not isinstance(caught.value, openai.APITimeoutError)


def test_stream_cut_raises_from_the_stream(client: OpenAI) -> None:
    stream = client.chat.completions.create(
        model="sim", messages=MESSAGES, stream=True, **fault("stream_cut")
    )
    received: list[str] = []

    def read_all() -> None:
        for chunk in stream:
            received.append(chunk.choices[0].delta.content or "")

    with pytest.raises(openai.APIConnectionError):
        read_all()
    assert received  # part of the text came before the cut


def test_stream_no_done_just_ends_without_finish_reason(client: OpenAI) -> None:
    chunks = list(
        client.chat.completions.create(
            model="sim", messages=MESSAGES, stream=True, **fault("stream_no_done")
        )
    )
    assert chunks
    assert all(c.choices[0].finish_reason is None for c in chunks)


def test_stream_error_event_raises_api_error(client: OpenAI) -> None:
    stream = client.chat.completions.create(
        model="sim", messages=MESSAGES, stream=True, **fault("stream_error_event")
    )
    with pytest.raises(openai.APIError) as caught:
        list(stream)
    assert not isinstance(caught.value, openai.APIStatusError)
    assert "server had an error" in caught.value.message


def test_keepalive_noise_is_parsed_through(client: OpenAI, sim: SimServer) -> None:
    plain = client.chat.completions.create(model="sim", messages=MESSAGES)
    stream = client.chat.completions.create(
        model="sim", messages=MESSAGES, stream=True, **fault("keepalive_noise")
    )
    text = "".join(c.choices[0].delta.content or "" for c in stream if c.choices)
    assert text == plain.choices[0].message.content
    noisy = client.chat.completions.create(
        model="sim", messages=MESSAGES, **fault("keepalive_noise")
    )
    assert noisy.choices[0].message.content == plain.choices[0].message.content


def test_stream_faults_do_not_count_as_produced(client: OpenAI, sim: SimServer) -> None:
    list(
        client.chat.completions.create(
            model="sim", messages=MESSAGES, stream=True, **fault("stream_no_done")
        )
    )
    list(client.chat.completions.create(model="sim", messages=MESSAGES, stream=True))
    assert sim.stats()["prompts"]["Tell me about lighthouses"]["produced"] == 1


def test_unknown_fault_name_is_refused_clearly(client: OpenAI) -> None:
    with pytest.raises(openai.BadRequestError) as caught:
        client.chat.completions.create(model="sim", messages=MESSAGES, **fault("gremlins"))
    assert "unknown fault 'gremlins'" in caught.value.message


def test_fault_with_count_applies_to_the_first_n_requests_only(client: OpenAI) -> None:
    for _ in range(2):
        with pytest.raises(openai.InternalServerError):
            client.chat.completions.create(
                model="sim", messages=MESSAGES, **fault("server_error*2")
            )
    reply = client.chat.completions.create(
        model="sim", messages=MESSAGES, **fault("server_error*2")
    )
    assert reply.choices


def test_fault_as_query_parameter(sim: SimServer) -> None:
    response = httpx.get(
        f"{sim.openai_base_url}/models?regen_fault=server_error",
        headers={"Authorization": "Bearer sk-x"},
    )
    assert response.status_code == 500


def test_stream_empty_choices_is_one_empty_chunk(client: OpenAI) -> None:
    chunks = list(
        client.chat.completions.create(
            model="sim", messages=MESSAGES, stream=True, **fault("empty_choices")
        )
    )
    assert [chunk.choices for chunk in chunks] == [[]]


def test_overloaded_with_retry_after(client: OpenAI) -> None:
    with pytest.raises(openai.InternalServerError) as caught:
        client.chat.completions.create(model="sim", messages=MESSAGES, **fault("overloaded:2"))
    assert caught.value.status_code == 503
    assert caught.value.response.headers["retry-after"] == "2"


def test_chunk_delay_paces_the_stream() -> None:
    with (
        run_simulator(chunk_delay=0.01) as server,
        OpenAI(base_url=server.openai_base_url, api_key="sk", max_retries=0) as paced,
    ):
        started = time.perf_counter()
        chunks = list(paced.chat.completions.create(model="sim", messages=MESSAGES, stream=True))
        assert time.perf_counter() - started >= 0.01 * (len(chunks) - 1)


async def test_create_app_runs_under_any_asgi_server() -> None:
    app = create_app(SimConfig())
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://sim") as http:
        response = await http.post(
            "/v1/chat/completions",
            json={"model": "sim", "messages": MESSAGES},
            headers={"Authorization": "Bearer sk"},
        )
    assert response.status_code == 200
    assert response.json()["choices"][0]["message"]["content"]
    assert app.state.snapshot()["routes"]["chat"]["requests"] == 1
