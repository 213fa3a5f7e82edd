"""The console's pages and its CSRF check, through aiohttp's test client, against the real
test stack's databases: a slow saga, a dead letter with an event parked behind it, an
overdue order, a reservation about to expire."""

from __future__ import annotations

import asyncio
import json
import re
import time
import uuid
from collections.abc import Iterator, Mapping
from dataclasses import dataclass

import psycopg
import pytest
from aiohttp.test_utils import TestClient, TestServer

from choreo.console.app import create_app
from choreo.outbox import deadletter
from choreo.services.inventory import store as inventory_store
from choreo.services.inventory.domain import ReleaseReason
from choreo.services.inventory.domain import Status as ReservationStatus
from choreo.services.orders import store as orders_store
from choreo.stack.settings import StackSettings
from choreo.testkit.shop import Shop
from tests.console.conftest import TOKEN, Letter

pytestmark = pytest.mark.stack


@dataclass(frozen=True)
class Answer:
    status: int
    text: str
    headers: Mapping[str, str]

    def json(self) -> dict[str, object]:
        return json.loads(self.text)  # type: ignore[no-any-return]


def call(settings: StackSettings, method: str, path: str, data: dict[str, str] | None = None,
         headers: dict[str, str] | None = None) -> Answer:
    async def go() -> Answer:
        app = create_app(settings, csrf_token=TOKEN)
        async with TestClient(TestServer(app, host="127.0.0.1")) as client:
            response = await client.request(method, path, data=data, headers=headers,
                                            allow_redirects=False)
            return Answer(response.status, await response.text(), response.headers)

    return asyncio.run(go())


def rows(page: str, table_id: str) -> list[str]:
    """The ``<tr>`` of the table with ``id=table_id`` (header row left out)."""
    match = re.search(rf"<table id={re.escape(table_id)}>(.*?)</table>", page, re.S)
    assert match, f"no table #{table_id}"
    return re.findall(r"<tr[ >].*?</tr>", match.group(1), re.S)[1:]


def entry_status(settings: StackSettings, letter: Letter) -> str:
    with psycopg.connect(settings.database_dsn(letter.service)) as conn:
        entry = deadletter.get_entry(conn, letter.seq)
    assert entry is not None
    return entry.status


def test_health_and_host_check(running_services: StackSettings) -> None:
    assert call(running_services, "GET", "/health").json() == {"status": "ok"}
    refused = call(running_services, "GET", "/", headers={"Host": "evil.example:80"})
    assert refused.status == 403 and refused.json()["error"]["code"] == "forbidden_host"  # type: ignore[index]


def test_sagas_by_status_and_search_by_order_id(running_services: StackSettings,
                                                slow_order: str) -> None:
    page = call(running_services, "GET", "/")
    assert page.status == 200 and "data-status=CONFIRMED" in page.text

    confirmed = call(running_services, "GET", "/?status=CONFIRMED").text
    assert f"data-order={slow_order}" in confirmed
    assert "data-order=" in confirmed and "PENDING</span></td>" not in "".join(
        rows(confirmed, "orders"))

    exact = call(running_services, "GET", f"/?q={slow_order.upper()}")
    assert exact.status == 303 and exact.headers["Location"] == f"/sagas/{slow_order}"

    by_prefix = call(running_services, "GET", f"/?q={slow_order[:13]}").text
    assert [row for row in rows(by_prefix, "orders") if slow_order in row]

    nothing = call(running_services, "GET", "/?q=ffffffff-ffff-ffff-ff").text
    assert "no order id starts with" in nothing

    assert call(running_services, "GET", "/?status=LOST").status == 400


def test_saga_page_timeline_waterfall_slowest_and_hops(running_services: StackSettings,
                                                       slow_order: str, letter: Letter) -> None:
    page = call(running_services, "GET", f"/sagas/{slow_order}")
    assert page.status == 200
    text = page.text

    assert "<span id=status data-status=CONFIRMED>" in text
    assert "<h2>What the customer was told</h2>" in text and "id=saga-told" in text
    timeline = rows(text, "timeline")
    assert [re.findall(r"<td>(\w+)</td>", row)[0] for row in timeline] == [
        "OrderPlaced", "StockReserved", "PaymentCaptured", "OrderConfirmed"]

    waterfall = rows(text, "waterfall")
    assert len(waterfall) >= 10
    slowest = [row for row in waterfall if row.startswith("<tr class=slowest")]
    assert len(slowest) == 1, slowest
    assert 'data-service="payments"' in slowest[0] and "POST /v1/charges" in slowest[0]
    assert "id=slowest-mark" in slowest[0]
    assert "slowest: <strong>payments POST /v1/charges</strong>" in text
    with_sql = rows(call(running_services, "GET", f"/sagas/{slow_order}?sql=1").text,
                    "waterfall")
    # SQL spans exist only where psycopg is traced (off by default): then a link shows them.
    assert (len(with_sql) > len(waterfall)) == ("database statements" in text)

    hops = rows(text, "hops")
    assert any("order.events -&gt; inventory" in row for row in hops), hops
    assert any("inventory.events -&gt; payments" in row for row in hops), hops

    letters = rows(text, "saga-dead-letters")
    ours = [row for row in letters if letter.consumer in row]
    assert len(ours) == 2 and f"/dead-letters/payments/{letter.seq}/replay" in ours[0]


def test_unknown_saga_is_a_404(running_services: StackSettings) -> None:
    assert call(running_services, "GET", f"/sagas/{uuid.uuid4()}").status == 404
    assert call(running_services, "GET", "/sagas/not-an-id").status == 404


@pytest.fixture
def overdue_order(running_services: StackSettings) -> Iterator[str]:
    """A PENDING order past its deadline that the deadline job cannot take: this test
    holds its row lock (the job skips locked rows; the console takes no lock). Released
    at the end, the job then cancels it like any overdue order."""
    order_id = uuid.uuid4()
    with psycopg.connect(running_services.database_dsn("orders")) as writer:
        writer.execute(orders_store.INSERT_ORDER, (
            order_id, f"console-test-{order_id}", "-", "console-test",
            json.dumps([{"sku": "mug-white", "quantity": 1}]), "tok_ok", "card", 1.0, ""))
        writer.commit()
        writer.execute(orders_store.LOCK_ORDER, (order_id,))
        time.sleep(1.5)
        yield str(order_id)
        writer.rollback()


@pytest.fixture
def held_reservation(running_services: StackSettings) -> Iterator[str]:
    """A reservation (of nothing) expiring in 100 s; released at the end, emitting nothing."""
    order_id = f"console-test-{uuid.uuid4()}"
    with psycopg.connect(running_services.database_dsn("inventory")) as conn:
        with conn.transaction():
            inventory_store.claim_order(conn, order_id)
            inventory_store.mark_reserved(conn, order_id, [], ttl_s=100)
        yield order_id
        with conn.transaction():
            inventory_store.set_status(conn, [order_id], ReservationStatus.RELEASED,
                                       ReleaseReason.EXPIRED)


def test_stuck_finder(running_services: StackSettings, letter: Letter, overdue_order: str,
                      held_reservation: str) -> None:
    page = call(running_services, "GET", "/stuck?within=200").text

    overdue = [row for row in rows(page, "overdue") if overdue_order in row]
    assert len(overdue) == 1 and "PENDING" in overdue[0]
    blocked = [row for row in rows(page, "blocked") if letter.consumer in row]
    assert len(blocked) == 1
    assert f"#{letter.seq}</a>" in blocked[0] and "<td class=n>1</td>" in blocked[0]
    expiring = [row for row in rows(page, "expiring") if held_reservation in row]
    assert len(expiring) == 1

    soon = call(running_services, "GET", "/stuck?within=30").text
    assert held_reservation not in soon  # 100 s left is not within 30 s


def test_dead_letters_list_and_show(running_services: StackSettings, letter: Letter) -> None:
    listing = call(running_services, "GET", "/dead-letters").text
    ours = [row for row in rows(listing, "dead-letters") if letter.consumer in row]
    assert len(ours) == 2
    assert "data-action=replay" in ours[0] and "data-action=replay" not in ours[1]  # parked

    shown = call(running_services, "GET", f"/dead-letters/payments/{letter.seq}")
    assert shown.status == 200
    payload = re.search(r"<pre id=payload>(.*?)</pre>", shown.text, re.S)
    assert payload and json.loads(payload.group(1).replace("&quot;", '"')) == {
        "order_id": letter.key, "total_cents": 1}
    assert call(running_services, "GET", "/dead-letters/payments/999999999").status == 404
    assert call(running_services, "GET", "/dead-letters/psp/1").status == 404


def test_a_post_without_the_right_token_is_refused_and_changes_nothing(
        running_services: StackSettings, letter: Letter) -> None:
    path = f"/dead-letters/payments/{letter.seq}/replay"

    missing = call(running_services, "POST", path, data={})
    wrong = call(running_services, "POST", path, data={"csrf_token": TOKEN + "x"})
    as_page = call(running_services, "POST", path, data={"csrf_token": "nope"},
                   headers={"Accept": "text/html"})

    assert missing.status == wrong.status == as_page.status == 403
    assert missing.json()["error"]["code"] == "csrf_failed"  # type: ignore[index]
    assert wrong.json()["error"]["code"] == "csrf_failed"  # type: ignore[index]
    assert as_page.headers["Content-Type"].startswith("text/html") and "CSRF" in as_page.text
    assert entry_status(running_services, letter) == "dead"


def test_a_post_with_the_token_requests_the_replay(running_services: StackSettings,
                                                   letter: Letter) -> None:
    path = f"/dead-letters/payments/{letter.seq}/replay"

    accepted = call(running_services, "POST", path, data={"csrf_token": TOKEN})

    assert accepted.status == 303
    assert accepted.headers["Location"] == f"/dead-letters/payments/{letter.seq}?requested=replay"
    assert entry_status(running_services, letter) == "replay"
    notice = call(running_services, "GET", accepted.headers["Location"]).text
    assert "id=notice" in notice and f"{letter.consumer} carries it out" in notice
    again = call(running_services, "POST", path, data={"csrf_token": TOKEN})
    assert again.status == 409  # only a dead entry can be acted on
    parked = call(running_services, "POST",
                  f"/dead-letters/payments/{letter.parked_seq}/discard",
                  data={"csrf_token": TOKEN})
    assert parked.status == 409


def test_stock_levels(running_services: StackSettings) -> None:
    sku = Shop(running_services).new_sku(available=7, unit_price_cents=1234)
    page = call(running_services, "GET", "/stock").text
    row = next(row for row in rows(page, "stock") if f'data-sku="{sku}"' in row)
    assert "12.34" in row and "<td class=n>7</td>" in row
