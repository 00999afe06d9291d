"""The WeChat Pay JSAPI-like payment endpoint: idempotent by out_trade_no."""

from __future__ import annotations

from typing import Any

import httpx
import pytest

from regen.sim import SimServer

AUTH = {"Authorization": 'WECHATPAY2-SHA256-RSA2048 mchid="1900000001",signature="sim"'}


def order(number: str = "order-0001", total: int = 100) -> dict[str, Any]:
    return {
        "appid": "wxd678efh567hg6787",
        "mchid": "1900000001",
        "description": "Art photo pack",
        "out_trade_no": number,
        "notify_url": "https://example.invalid/notify",
        "amount": {"total": total, "currency": "CNY"},
        "payer": {"openid": "oUpF8uMuAJO_M2pxb1Q9zNjWeS6o"},
    }


@pytest.fixture
def pay(sim: SimServer) -> Any:
    with httpx.Client(base_url=sim.pay_base_url, headers=AUTH, timeout=5) as client:
        yield client


def test_order_returns_a_prepay_id(pay: httpx.Client, sim: SimServer) -> None:
    response = pay.post("/transactions/jsapi", json=order())
    assert response.status_code == 200
    assert response.json()["prepay_id"].startswith("wx")
    assert sim.stats()["payments"]["charges"] == 1


def test_duplicate_out_trade_no_returns_the_first_result_without_charging_twice(
    pay: httpx.Client, sim: SimServer
) -> None:
    first = pay.post("/transactions/jsapi", json=order()).json()
    again = pay.post("/transactions/jsapi", json=order()).json()
    assert again == first
    payments = sim.stats()["payments"]
    assert payments["charges"] == 1
    assert payments["by_out_trade_no"]["order-0001"] == {"requests": 2, "charges": 1, "amount": 100}


def test_same_out_trade_no_with_another_amount_is_refused(pay: httpx.Client) -> None:
    pay.post("/transactions/jsapi", json=order(total=100))
    response = pay.post("/transactions/jsapi", json=order(total=200))
    assert response.status_code == 400
    assert response.json()["code"] == "INVALID_REQUEST"


def test_a_hung_payment_was_charged_and_the_retry_is_not(pay: httpx.Client, sim: SimServer) -> None:
    with pytest.raises(httpx.ReadTimeout):
        pay.post(
            "/transactions/jsapi", json=order(), headers={"X-Regen-Fault": "hang"}, timeout=0.3
        )
    retried = pay.post("/transactions/jsapi", json=order())
    assert retried.status_code == 200
    payments = sim.stats()["payments"]
    assert payments["charges"] == 1
    assert payments["by_out_trade_no"]["order-0001"]["requests"] == 2


def test_a_rejected_payment_is_not_charged(pay: httpx.Client, sim: SimServer) -> None:
    response = pay.post(
        "/transactions/jsapi", json=order(), headers={"X-Regen-Fault": "server_error"}
    )
    assert response.status_code == 500
    assert response.json()["code"] == "SYSTEM_ERROR"
    assert sim.stats()["payments"]["charges"] == 0


def test_query_by_out_trade_no(pay: httpx.Client) -> None:
    assert pay.get("/transactions/out-trade-no/order-0001").status_code == 404
    pay.post("/transactions/jsapi", json=order())
    found = pay.get("/transactions/out-trade-no/order-0001").json()
    assert found["trade_state"] == "SUCCESS"
    assert found["amount"]["total"] == 100


def test_bad_order_is_param_error(pay: httpx.Client) -> None:
    response = pay.post("/transactions/jsapi", json={**order(), "amount": {"total": 0}})
    assert response.status_code == 400
    assert response.json()["code"] == "PARAM_ERROR"


def test_missing_authorization_is_401(sim: SimServer) -> None:
    response = httpx.post(f"{sim.pay_base_url}/transactions/jsapi", json=order())
    assert response.status_code == 401
    assert response.json()["code"] == "SIGN_ERROR"
