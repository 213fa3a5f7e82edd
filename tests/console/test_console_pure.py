"""The console without a stack: what the pages escape and show, and that a POST without
the token is refused before any database is touched."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta
from pathlib import Path

from aiohttp.test_utils import TestClient, TestServer

from choreo.console import pages
from choreo.console.app import create_app
from choreo.console.reads import ServiceEntry, Stuck, blocked_keys
from choreo.outbox.deadletter import DeadLetter
from choreo.outbox.delivery import Delivery
from choreo.services.inventory.store import HeldReservation
from choreo.services.orders.store import OrderView
from choreo.stack.settings import StackSettings

NOW = datetime(2026, 12, 2, 3, 0, tzinfo=UTC)
ORDER_ID = "0b6f4a3e-1111-4222-8333-944455556666"


def order(status: str = "PENDING", customer: str = "c-1") -> OrderView:
    return OrderView(ORDER_ID, customer, [{"sku": "mug-white", "quantity": 2}], status, None,
                     None, NOW - timedelta(seconds=5), NOW - timedelta(seconds=35), NOW)


def letter(seq: int, status: str, consumer: str = "payments", key: str = ORDER_ID
           ) -> DeadLetter:
    return DeadLetter(seq, consumer, key, "e-1", "StockReserved", status, "boom", 3,
                      Delivery("inventory.events", 0, seq, key, b"\x00", {}), str(NOW))


def test_the_stuck_page_shows_each_kind_of_stuck_saga() -> None:
    view = Stuck([order()], blocked_keys([]), [HeldReservation(ORDER_ID, NOW, -4.0)], 60.0)
    page = pages.stuck_page(view)
    assert f"data-order={ORDER_ID}" in page and "PENDING" in page
    assert "none: no key is held back by a dead letter" in page
    assert "<td class=n>-4</td>" in page


def test_blocked_keys_are_grouped_with_their_head_and_parked_count() -> None:
    entries = [ServiceEntry("payments", letter(7, "dead")),
               ServiceEntry("payments", letter(8, "parked")),
               ServiceEntry("payments", letter(9, "parked")),
               ServiceEntry("inventory", letter(3, "dead", "inventory", "other-key"))]
    keys = blocked_keys(entries)
    assert [(k.service, k.head.seq, k.parked, k.order_id) for k in keys] == [
        ("inventory", 3, 0, None), ("payments", 7, 2, ORDER_ID)]


def test_values_from_the_databases_are_escaped() -> None:
    page = pages.stuck_page(Stuck([order(customer="<script>alert(1)</script>")], [], [], 60))
    assert "<script>alert" not in page and "&lt;script&gt;alert(1)&lt;/script&gt;" in page


def test_only_a_dead_entry_gets_the_forms_and_they_carry_the_token() -> None:
    forms = pages.action_forms("payments", letter(7, "dead"), pages.Forms("tok-123"))
    assert forms.count("method=post") == 2 and forms.count('value="tok-123"') == 2
    assert "operator_token" not in forms
    assert pages.action_forms("payments", letter(8, "parked"), pages.Forms("tok-123")) == ""
    asking = pages.action_forms("payments", letter(7, "dead"), pages.Forms("tok-123", True))
    assert asking.count("type=password name=operator_token") == 2


def test_a_post_without_the_token_is_refused_before_any_database_is_read() -> None:
    unreachable = StackSettings(state_dir=Path("/nonexistent"), postgres_port=1)

    async def go() -> list[tuple[int, str]]:
        app = create_app(unreachable, csrf_token="right")
        async with TestClient(TestServer(app, host="127.0.0.1")) as client:
            answers = []
            for data in ({}, {"csrf_token": "wrong"}):
                response = await client.post("/dead-letters/payments/1/replay", data=data)
                answers.append((response.status, (await response.json())["error"]["code"]))
            return answers

    assert asyncio.run(go()) == [(403, "csrf_failed"), (403, "csrf_failed")]


def test_with_an_operator_token_a_post_needs_it_too() -> None:
    unreachable = StackSettings(state_dir=Path("/nonexistent"), postgres_port=1,
                                operator_token="op-secret")

    async def go() -> list[tuple[int, str]]:
        app = create_app(unreachable, csrf_token="right")
        async with TestClient(TestServer(app, host="127.0.0.1")) as client:
            answers = []
            for operator in ({}, {"operator_token": "wrong"}, {"operator_token": "op-secret"}):
                response = await client.post("/dead-letters/payments/1/replay",
                                             data={"csrf_token": "right", **operator})
                answers.append((response.status, (await response.json())["error"]["code"]))
            return answers

    # The right token gets past the guard, to a database that is not there.
    assert asyncio.run(go()) == [(401, "operator_token_required"),
                                 (401, "operator_token_required"),
                                 (503, "database_unavailable")]
