"""``choreo trace``'s reading of a trace: own time, the slowest wait, hops; spans by hand."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta

from choreo.cli.trace import as_document, render
from choreo.console.waterfall import own_time_ms
from choreo.outbox.span_store import StoredSpan

T0 = datetime(2026, 12, 2, 3, 0, tzinfo=UTC)


def span(span_id: str, parent: str | None, service: str, name: str, start_ms: float,
         end_ms: float, kind: str = "internal", **attributes: object) -> StoredSpan:
    return StoredSpan("t" * 32, span_id, parent, service, name, kind,
                      T0 + timedelta(milliseconds=start_ms), T0 + timedelta(milliseconds=end_ms),
                      "unset", dict(attributes))


SLOW_PAYMENT = [
    span("a", None, "orders-api", "POST /orders", 0, 20, "server"),
    span("b", "a", "orders-api", "outbox write OrderPlaced", 5, 8, "producer"),
    span("c", "b", "payments", "relay order.events -> payments", 8, 30, "consumer",
         **{"choreo.cdc_ms": 15, "choreo.delivery_ms": 7}),
    span("d", "c", "payments", "handle StockReserved", 31, 2140, "consumer"),
    span("e", "d", "payments", "SELECT", 32, 34, "client", **{"db.system": "postgresql"}),
    span("f", "d", "payments", "POST", 40, 2120, "client",
         **{"url.full": "http://127.0.0.1:18090/v1/charges"}),
    span("g", "f", "psp", "POST /v1/charges", 45, 2110, "server"),
    span("h", "g", "psp", "INSERT", 2100, 2105, "client", **{"db.system": "postgresql"}),
]


def test_own_time_leaves_out_same_service_children_only() -> None:
    handler, call, psp = SLOW_PAYMENT[3], SLOW_PAYMENT[5], SLOW_PAYMENT[6]
    assert own_time_ms(handler, SLOW_PAYMENT) == 2109 - 2 - 2080
    assert own_time_ms(call, SLOW_PAYMENT) == 2080  # its wait on the psp stays its own
    assert own_time_ms(psp, SLOW_PAYMENT) == 2065 - 5


def test_overlapping_children_are_not_counted_twice() -> None:
    parent = span("p", None, "s", "parent", 0, 100)
    family = [parent, span("x", "p", "s", "x", 10, 60), span("y", "p", "s", "y", 40, 90)]
    assert own_time_ms(parent, family) == 20


def test_the_slow_psp_call_is_marked_and_named_after_payments() -> None:
    out = render("o-1", SLOW_PAYMENT, with_sql=False, width=120)

    marked = [line for line in out if line.endswith("<- slowest")]
    assert len(marked) == 1 and "payments" in marked[0] and "POST /v1/charges" in marked[0]
    assert "slowest: payments POST /v1/charges, 2,080.0 ms of its own" in out
    assert "(2 database statements not shown; --sql shows them)" in out
    assert any(line.strip().startswith("order.events -> payments") and "22.0 ms" in line
               and "to the broker 15 ms, then 7 ms" in line for line in out)
    assert out[0].startswith("order o-1: trace tttt") and "2,140 ms, 8 spans, 3 services" in out[0]


def test_sql_statements_are_shown_on_request() -> None:
    out = render("o-1", SLOW_PAYMENT, with_sql=True, width=120)
    assert sum(" SELECT " in line or " INSERT " in line for line in out) == 2
    assert not any("not shown" in line for line in out)


def test_the_json_document_holds_what_the_waterfall_shows() -> None:
    document = json.loads(json.dumps(as_document("o-1", SLOW_PAYMENT, with_sql=False),
                                     default=str))
    assert (document["order_id"], document["took_ms"]) == ("o-1", 2140.0)
    assert [span["span_id"] for span in document["spans"]] == ["a", "b", "c", "d", "f", "g"]
    assert document["slowest"] == {"service": "payments", "span": "POST /v1/charges",
                                   "own_ms": 2080.0}
    assert document["hops"] == [{"route": "order.events -> payments", "took_ms": 22.0,
                                 "cdc_ms": 15, "delivery_ms": 7}]
