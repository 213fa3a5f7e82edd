"""The users API against the test stack's PostgreSQL: each change and its event commit
together, once per Idempotency-Key, and nothing is written for a refused request.

Served in-process (aiohttp's test server) on a database of the suite's own; the outbox
rows are read back and decoded with the service's schemas.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Iterator
from typing import Any

import psycopg
import pytest
from aiohttp.test_utils import TestClient, TestServer
from psycopg_pool import AsyncConnectionPool

from choreo.outbox import OutboxWriter
from choreo.outbox.codec import EventCodec
from choreo.outbox.runner import apply_schema
from choreo.outbox.wire import OUTBOX_DDL
from choreo.schemas.catalog import SchemaCatalog
from choreo.services.users.__main__ import DEFINITION
from choreo.services.users.api import create_app
from choreo.stack.settings import StackSettings
from tests.support import scratch_database

pytestmark = pytest.mark.postgres

CODEC = EventCodec(SchemaCatalog.load())
RUN = uuid.uuid4().hex[:8]
"""The database outlives a run: each run's Idempotency-Keys are its own."""
ADA = {"name": "Ada", "email": "ada@example.org",
       "preferences": {"channel": "email", "address": "Berlin", "marketing_allowed": False}}


@pytest.fixture(scope="module")
def dsn(running_postgres: StackSettings) -> Iterator[str]:
    dsn = scratch_database(running_postgres, "users_api")
    apply_schema(dsn, OUTBOX_DDL, DEFINITION.schema_sql)
    yield dsn


def call(dsn: str, *requests: tuple[str, str, dict[str, Any] | None, str | None]
         ) -> list[tuple[int, Any]]:
    """Each (method, path, body, key) in turn against one app; (status, JSON body) each."""
    async def run() -> list[tuple[int, Any]]:
        writer = OutboxWriter.for_schemas("users", DEFINITION.schemas, emits=DEFINITION.emits)
        async with AsyncConnectionPool(dsn, min_size=1, open=False) as pool:
            app = create_app(pool, writer)
            async with TestClient(TestServer(app, host="127.0.0.1")) as client:
                answers = []
                for method, path, body, key in requests:
                    headers = {"Idempotency-Key": f"{key}-{RUN}"} if key else {}
                    response = await client.request(method, path, json=body, headers=headers)
                    answers.append((response.status, await response.json()))
                return answers
    return asyncio.run(run())


def events_of(dsn: str, customer_id: str) -> list[tuple[str, dict[str, Any]]]:
    with psycopg.connect(dsn) as conn:
        rows = conn.execute("SELECT type, dataschema, payload FROM outbox WHERE aggregateid = %s"
                            " ORDER BY seq", (customer_id,)).fetchall()
    return [(kind, CODEC.decode(kind, schema, bytes(payload))) for kind, schema, payload in rows]


def test_a_registration_commits_the_customer_and_its_event_once(dsn: str) -> None:
    (status, first), (again, replay) = call(dsn, ("POST", "/customers", ADA, "reg-1"),
                                            ("POST", "/customers", ADA, "reg-1"))

    assert (status, again, replay) == (201, 201, first)
    [(kind, payload)] = events_of(dsn, first["id"])
    assert kind == "CustomerRegistered"
    assert payload == {"customer_id": first["id"], "name": "Ada", "email": "ada@example.org",
                       "phone": None, "preferences": ADA["preferences"]}
    (shown, customer), = call(dsn, ("GET", first["status_url"], None, None))
    assert (shown, customer["preferences"], customer["blocked"]) == (
        200, ADA["preferences"], False)


def test_preferences_and_status_changes_are_events_of_the_customer(dsn: str) -> None:
    (_, ada), = call(dsn, ("POST", "/customers", ADA, "reg-2"))
    path = f"/customers/{ada['id']}"
    answers = call(dsn,
                   ("PUT", f"{path}/preferences", {"channel": "none", "address": "Paris"}, "p-1"),
                   ("PUT", f"{path}/status", {"blocked": True, "reason": "chargebacks"}, "s-1"),
                   ("PUT", f"{path}/status", {"blocked": True, "reason": "chargebacks"}, "s-1"),
                   ("GET", path, None, None))

    assert [status for status, _ in answers] == [200, 200, 200, 200]
    assert answers[-1][1]["blocked"] and answers[-1][1]["block_reason"] == "chargebacks"
    assert [kind for kind, _ in events_of(dsn, ada["id"])] == [
        "CustomerRegistered", "PreferencesChanged", "CustomerStatusChanged"]
    assert events_of(dsn, ada["id"])[1][1]["preferences"] == {
        "channel": "none", "address": "Paris", "marketing_allowed": False}


def test_refused_requests_write_nothing(dsn: str) -> None:
    (_, ada), = call(dsn, ("POST", "/customers", ADA, "reg-3"))
    answers = call(
        dsn,
        ("PUT", f"/customers/{ada['id']}/preferences", {"channel": "sms", "address": "B"}, "p-2"),
        ("PUT", f"/customers/{ada['id']}/preferences", {"channel": "none", "address": "B"},
         "reg-3"),
        ("POST", "/customers", {**ADA, "name": "Eve"}, "reg-3"),
        ("PUT", "/customers/nobody/status", {"blocked": True, "reason": "r"}, "s-2"),
        ("POST", "/customers", ADA, None))

    assert [(status, body["error"]["code"], body["error"].get("field")) for status, body
            in answers] == [
        (422, "validation_failed", "channel"),  # sms, and Ada gave no phone number
        (422, "idempotency_key_reused", "Idempotency-Key"),
        (422, "idempotency_key_reused", "Idempotency-Key"),
        (404, "not_found", "customer_id"),
        (400, "idempotency_key_required", "Idempotency-Key")]
    assert [kind for kind, _ in events_of(dsn, ada["id"])] == ["CustomerRegistered"]
