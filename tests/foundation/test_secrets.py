"""Secret masking: every key regen knows, whatever its shape, and key-shaped values where
they stand are masked; ordinary words are not."""

from __future__ import annotations

import secrets
import uuid
from pathlib import Path

import pytest

from regen.foundation import mask, mask_data, mask_secrets, remember_secret
from regen.providers import Registry


def _gateway_key() -> str:
    """A made-up gateway key (no ``sk-`` prefix), built at run time."""
    return "gw-" + secrets.token_hex(16)


def test_ordinary_words_after_a_key_name_are_kept() -> None:
    text = "invalid_api_key: Incorrect API key"
    assert mask_secrets(text) == text
    for text in ("the token: supercalifragilistic", "password reset required", "api_key=None"):
        assert mask_secrets(text) == text


def test_a_key_in_a_url_query_string_is_masked() -> None:
    key = _gateway_key()
    masked = mask_secrets(f"GET https://gateway.example/v1/images?key={key}&size=512: 401")
    assert key not in masked
    assert masked == f"GET https://gateway.example/v1/images?key=…{key[-4:]}&size=512: 401"
    for name in ("api_key", "access_token", "token", "sig", "X-Amz-Signature"):
        assert key not in mask_secrets(f"https://cdn.example/a.png?page=2&{name}={key}")


def test_a_key_after_incorrect_api_key_provided_is_masked() -> None:
    key = _gateway_key()
    masked = mask_secrets(f"Error code: 401 - Incorrect API key provided: {key}. See docs.")
    assert masked == f"Error code: 401 - Incorrect API key provided: …{key[-4:]}. See docs."


def test_the_password_of_a_url_userinfo_is_masked() -> None:
    key = _gateway_key()
    masked = mask_secrets(f"cannot connect to https://user:{key}@proxy.example:8080/v1")
    assert masked == f"cannot connect to https://user:…{key[-4:]}@proxy.example:8080/v1"


def test_a_plain_sk_key_is_masked_keeping_its_prefix() -> None:
    key = "sk-" + secrets.token_hex(16)
    assert mask_secrets(f"bad key {key} (401)") == f"bad key sk-…{key[-4:]} (401)"
    assert mask(key) == f"sk-…{key[-4:]}"


def test_a_uuid_shaped_key_from_the_environment_is_masked_wherever_it_appears(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    key = str(uuid.uuid4())
    text = f"the gateway said: {key} is not allowed"
    assert mask_secrets(text) == text  # a bare UUID is not key-shaped by itself...
    monkeypatch.setenv("MY_GATEWAY_API_KEY", key)
    assert mask_secrets(text) == f"the gateway said: …{key[-4:]} is not allowed"  # ...but known
    monkeypatch.delenv("MY_GATEWAY_API_KEY")
    assert mask_secrets(text) == text  # read again at masking time


@pytest.mark.parametrize("suffix", ["_API_KEY", "_TOKEN", "_SECRET", "_PASSWORD"])
def test_every_secret_named_variable_is_read(monkeypatch: pytest.MonkeyPatch, suffix: str) -> None:
    value = "Plain" + secrets.token_hex(4)
    monkeypatch.setenv(f"SOME_SERVICE{suffix}", value)
    assert value not in mask_secrets(f"<{value}>")


def test_short_values_and_other_variables_are_not_masked(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SHORT_TOKEN", "1234567")  # under 8 characters: would eat words
    monkeypatch.setenv("MY_GATEWAY_MODEL", "gateway-model-large")
    assert mask_secrets("1234567 gateway-model-large") == "1234567 gateway-model-large"


def test_a_key_the_registry_loads_from_a_file_is_masked(tmp_path: Path) -> None:
    key = _gateway_key()
    providers = tmp_path / "regen.toml"
    providers.write_text(
        f'[providers.gw]\nkind = "openai"\nbase_url = "http://127.0.0.1:1/v1"\napi_key = "{key}"\n'
    )
    assert key in mask_secrets(f"echo {key}")  # not known yet, not key-shaped in this text
    Registry.from_toml(providers, environ={})
    assert mask_secrets(f"echo {key}") == f"echo …{key[-4:]}"


def test_remembered_secrets_are_masked_and_short_ones_ignored() -> None:
    value = "Remembered" + secrets.token_hex(4)
    remember_secret(value)
    remember_secret("short")
    assert mask_secrets(f"{value} short") == f"…{value[-4:]} short"


def test_masking_twice_changes_nothing_more(monkeypatch: pytest.MonkeyPatch) -> None:
    key = _gateway_key()
    monkeypatch.setenv("MY_GATEWAY_API_KEY", key)
    text = f"https://u:{key}@p ?key={key} Bearer {key} api_key={key} provided: {key}"
    once = mask_secrets(text)
    assert key not in once
    assert mask_secrets(once) == once


def test_data_is_masked_in_every_string_it_holds(monkeypatch: pytest.MonkeyPatch) -> None:
    key = _gateway_key()
    monkeypatch.setenv("MY_GATEWAY_API_KEY", key)
    data = {"k": key, "nested": [{"url": f"https://x/?token={key}"}, (key, 3)], key: None, "n": 1}
    masked = mask_data(data)
    assert key not in repr(masked)
    assert masked["n"] == 1
    assert masked["nested"][1] == [f"…{key[-4:]}", 3]
