"""Admission control without a server: the token bucket, its memory bound, the backlog gate,
their settings, and the intake refusing before it touches the database."""

from __future__ import annotations

import asyncio
import json

import pytest
from aiohttp.test_utils import TestClient, TestServer
from openapi_spec_validator import validate
from psycopg_pool import AsyncConnectionPool

from choreo.outbox.codec import EventCodec
from choreo.outbox.errors import ConfigError
from choreo.outbox.writer import OutboxWriter
from choreo.schemas.catalog import SchemaCatalog
from choreo.services.orders.admission import Backlog, RateLimiter, client_of, retry_after
from choreo.services.orders.api import BACKLOG, LIMITER, OPENAPI, create_app
from choreo.services.orders.settings import ApiSettings


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_a_burst_is_granted_then_the_rate_applies() -> None:
    clock = Clock()
    limiter = RateLimiter(rate_per_s=2, burst=3, max_clients=10, clock=clock)

    assert [limiter.acquire("a") for _ in range(3)] == [0.0, 0.0, 0.0]
    assert limiter.acquire("a") == pytest.approx(0.5)  # one token back in 1/rate
    assert limiter.acquire("b") == 0.0  # another client has a bucket of its own
    clock.now += 0.25
    assert limiter.acquire("a") == pytest.approx(0.25)  # a refusal takes nothing
    clock.now += 0.25
    assert limiter.acquire("a") == 0.0
    assert limiter.acquire("a") == pytest.approx(0.5)
    clock.now += 100
    assert [limiter.acquire("a") for _ in range(4)][-1] > 0  # refilled to burst, not beyond


def test_idle_clients_are_forgotten_and_memory_is_bounded() -> None:
    clock = Clock()
    limiter = RateLimiter(rate_per_s=1, burst=2, max_clients=3, clock=clock)
    limiter.acquire("a")
    limiter.acquire("b")
    clock.now += 1  # a and b full again: the same as never seen
    limiter.acquire("c")
    assert len(limiter) == 1

    for client in ("d", "e", "f", "g"):  # none idle long enough: the cap decides
        limiter.acquire(client)
        limiter.acquire(client)
    assert len(limiter) == 3
    assert limiter.acquire("g") > 0  # the most recent are kept, with their state
    assert limiter.acquire("c") == 0.0  # forgotten, so it starts with a full bucket


def test_the_client_is_the_api_key_when_sent_else_the_customer() -> None:
    assert client_of({}, "c-1") == "customer:c-1"
    assert client_of({"X-API-Key": ""}, "c-1") == "customer:c-1"
    keyed = client_of({"X-API-Key": "secret"}, "c-1")
    assert keyed == client_of({"X-API-Key": "secret"}, "c-2")
    assert "secret" not in keyed and keyed != client_of({"X-API-Key": "other"}, "c-1")


@pytest.mark.parametrize(("seconds", "header"), [(0.01, "1"), (1.0, "1"), (1.2, "2"),
                                                 (30, "30")])
def test_retry_after_is_whole_seconds_rounded_up(seconds: float, header: str) -> None:
    assert retry_after(seconds) == header


def test_the_backlog_sheds_at_the_threshold_and_forgets_a_stale_sample() -> None:
    clock = Clock()
    backlog = Backlog(max_pending=10, sample_s=1.0, clock=clock)
    assert not backlog.overloaded()  # nothing sampled yet
    backlog.record(9)
    assert not backlog.overloaded()
    backlog.record(10)
    assert backlog.overloaded()
    clock.now += 3.5  # the sampler stopped (say, the database went away)
    assert backlog.pending is None and not backlog.overloaded()
    backlog.record(None)  # a failed sample
    assert not backlog.overloaded()


def test_admission_settings_default_off_and_name_a_bad_variable() -> None:
    defaults = ApiSettings.from_env({})
    assert (defaults.rate_limit_per_s, defaults.max_pending) == (0.0, 1000)
    on = ApiSettings.from_env({"CHOREO_ORDERS_RATE_LIMIT_PER_S": "2.5",
                               "CHOREO_ORDERS_RATE_LIMIT_BURST": "5",
                               "CHOREO_ORDERS_MAX_PENDING": "0"})
    assert (on.rate_limit_per_s, on.rate_limit_burst, on.max_pending) == (2.5, 5, 0)
    for env, variable in [
        ({"CHOREO_ORDERS_RATE_LIMIT_PER_S": "fast"}, "CHOREO_ORDERS_RATE_LIMIT_PER_S"),
        ({"CHOREO_ORDERS_RATE_LIMIT_PER_S": "-1"}, "CHOREO_ORDERS_RATE_LIMIT_PER_S"),
        ({"CHOREO_ORDERS_RATE_LIMIT_PER_S": "inf"}, "CHOREO_ORDERS_RATE_LIMIT_PER_S"),
        ({"CHOREO_ORDERS_RATE_LIMIT_PER_S": "1", "CHOREO_ORDERS_RATE_LIMIT_BURST": "0"},
         "CHOREO_ORDERS_RATE_LIMIT_BURST"),
        ({"CHOREO_ORDERS_RATE_LIMIT_BURST": "2.5"}, "CHOREO_ORDERS_RATE_LIMIT_BURST"),
        ({"CHOREO_ORDERS_RATE_LIMIT_CLIENTS": "0"}, "CHOREO_ORDERS_RATE_LIMIT_CLIENTS"),
        ({"CHOREO_ORDERS_MAX_PENDING": "many"}, "CHOREO_ORDERS_MAX_PENDING"),
        ({"CHOREO_ORDERS_PENDING_SAMPLE_S": "0"}, "CHOREO_ORDERS_PENDING_SAMPLE_S"),
        ({"CHOREO_ORDERS_PENDING_SAMPLE_S": "nan"}, "CHOREO_ORDERS_PENDING_SAMPLE_S"),
    ]:
        with pytest.raises(ConfigError, match=variable):
            ApiSettings.from_env(env)


BODY = {"customer_id": "c-1", "payment_token": "tok_ok",
        "items": [{"sku": "mug-white", "quantity": 1}]}


async def answers(prepare: str) -> list[tuple[int, dict[str, str], dict]]:
    """Requests to an intake whose pool was never opened: any database use would fail."""
    pool = AsyncConnectionPool("postgresql://nowhere.invalid/none", open=False)
    writer = OutboxWriter(EventCodec(SchemaCatalog.load()), source="orders", emits=None)
    app = create_app(pool, writer, ApiSettings(max_pending=0))
    if prepare == "overloaded":
        app[BACKLOG] = Backlog(max_pending=1, sample_s=60)
        app[BACKLOG].record(1)
    else:
        app[LIMITER] = RateLimiter(rate_per_s=0.001, burst=1, max_clients=10)
        app[LIMITER].acquire("customer:c-1")  # the one token, spent
    async with TestClient(TestServer(app, host="127.0.0.1")) as client:
        results = []
        for method, path in (("POST", "/orders"), ("GET", "/orders")):
            response = await client.request(method, path, json=BODY,
                                            headers={"Idempotency-Key": "k"})
            results.append((response.status, dict(response.headers), await response.json()))
        return results


@pytest.mark.parametrize(("prepare", "status", "code", "retry"), [
    ("overloaded", 503, "overloaded", "5"), ("limited", 429, "rate_limited", "1000")])
def test_a_refusal_comes_before_the_database_and_405_names_the_allowed_method(
        prepare: str, status: int, code: str, retry: str) -> None:
    (posted, headers, body), (wrong, wrong_headers, wrong_body) = asyncio.run(answers(prepare))

    assert (posted, headers["Retry-After"], body["error"]["code"]) == (status, retry, code)
    assert wrong == 405 and wrong_headers["Allow"] == "POST"
    assert wrong_body["error"]["code"] == "method_not_allowed"


def test_the_openapi_document_has_the_refusals_with_their_headers() -> None:
    document = json.loads(OPENAPI.read_text())
    validate(document)
    components = document["components"]["responses"]

    def resolved(response: dict) -> dict:
        return components[response["$ref"].rsplit("/", 1)[1]] if "$ref" in response \
            else response

    place = document["paths"]["/orders"]["post"]["responses"]
    for status in ("429", "503"):
        assert "Retry-After" in resolved(place[status])["headers"]
    assert "idempotency_key_reused" in resolved(place["422"])["description"]
    for operations in document["paths"].values():
        for operation in operations.values():
            assert "Allow" in resolved(operation["responses"]["405"])["headers"]
