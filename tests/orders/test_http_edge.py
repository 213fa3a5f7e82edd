"""The HTTP edge on the real service: 4xx with a JSON body naming the problem, never a 500,
never a half-written order; idempotency keys behave like well-known APIs'."""

from __future__ import annotations

import json
import uuid

import pytest
import requests
from openapi_spec_validator import validate

from choreo.services.orders.api import OPENAPI
from choreo.stack.settings import StackSettings

pytestmark = pytest.mark.stack

BODY = {"customer_id": "edge", "payment_token": "tok_ok",
        "items": [{"sku": "mug-white", "quantity": 1}]}


@pytest.fixture(scope="module")
def base(running_services: StackSettings) -> str:
    return f"http://127.0.0.1:{running_services.port_of('orders-api')}"


def post(base: str, body: object, key: str | None = "auto", **headers: str) -> requests.Response:
    if key is not None:
        headers["Idempotency-Key"] = str(uuid.uuid4()) if key == "auto" else key
    data = body if isinstance(body, bytes) else json.dumps(body).encode()
    return requests.post(f"{base}/orders", data=data, timeout=10,
                         headers={"Content-Type": "application/json", **headers})


def error_of(response: requests.Response) -> dict:
    assert response.headers["Content-Type"].startswith("application/json")
    return response.json()["error"]


def test_missing_idempotency_key_is_400(base: str) -> None:
    response = post(base, BODY, key=None)
    assert response.status_code == 400
    assert error_of(response)["field"] == "Idempotency-Key"


@pytest.mark.parametrize(("raw", "status", "field"), [
    (b"{not json", 400, "$"),
    (b"[1, 2]", 400, "$"),
    (json.dumps({**BODY, "items": [{"sku": "m", "quantity": 0}]}).encode(), 422,
     "items[0].quantity"),
])
def test_bad_bodies_name_the_problem(base: str, raw: bytes, status: int, field: str) -> None:
    response = post(base, raw)
    assert response.status_code == status
    assert error_of(response)["field"] == field


def test_wrong_content_type_and_oversized_body(base: str) -> None:
    response = requests.post(f"{base}/orders", data="x", timeout=10,
                             headers={"Idempotency-Key": "k", "Content-Type": "text/plain"})
    assert response.status_code == 400
    assert error_of(response)["field"] == "Content-Type"
    response = post(base, b"{" + b" " * (70 * 1024) + b"}")
    assert response.status_code == 413
    assert error_of(response)["code"]


def test_same_key_same_body_is_the_same_order_other_body_is_422(base: str) -> None:
    key = f"edge-{uuid.uuid4()}"
    first, again = post(base, BODY, key), post(base, BODY, key)
    assert (first.status_code, again.status_code) == (202, 202)
    assert first.json()["id"] == again.json()["id"]
    assert (first.json()["replayed"], again.json()["replayed"]) == (False, True)
    assert first.headers["Location"] == f"/orders/{first.json()['id']}"
    other = post(base, {**BODY, "customer_id": "someone else"}, key)
    assert other.status_code == 422
    assert error_of(other)["code"] == "idempotency_key_reused"


def test_unknown_orders_and_routes_are_json_404(base: str) -> None:
    for path in (f"/orders/{uuid.uuid4()}", "/orders/not-a-uuid", "/nowhere"):
        response = requests.get(f"{base}{path}", timeout=10)
        assert response.status_code == 404
        assert error_of(response)["code"]


def test_cancel_twice_is_409(base: str) -> None:
    order_id = post(base, BODY).json()["id"]
    assert requests.post(f"{base}/orders/{order_id}/cancel", timeout=10).status_code == 202
    again = requests.post(f"{base}/orders/{order_id}/cancel", timeout=10)
    assert again.status_code == 409
    assert "CANCELLED" in error_of(again)["message"]


def test_served_openapi_document_is_the_kept_one_and_valid(base: str) -> None:
    served = requests.get(f"{base}/openapi.json", timeout=10).json()
    assert served == json.loads(OPENAPI.read_text())
    validate(served)


def test_health_and_metrics(base: str) -> None:
    assert requests.get(f"{base}/health", timeout=10).json() == {"status": "ok"}
    metrics = requests.get(f"{base}/metrics", timeout=10).text
    assert "choreo_http_requests_total" in metrics
