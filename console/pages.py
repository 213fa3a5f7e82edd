"""The console's pages as HTML strings: pure functions of what ``console.reads`` returned.

Server-rendered, self-contained (inline CSS, one line of JavaScript for the discard
confirmation), nothing fetched from the network. Every value from a database goes
through ``esc``. Elements tests and people look for carry an ``id`` or a ``data-``
attribute: ``#status``, ``#timeline``, ``#waterfall``, ``.slowest``, ``#hops``.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime
from html import escape
from typing import Any
from urllib.parse import quote, urlencode

from choreo.console import waterfall
from choreo.console.reads import BlockedKey, Overview, Saga, ServiceEntry, Stuck
from choreo.outbox.deadletter import DeadLetter
from choreo.services.inventory.catalog import StockLevel
from choreo.services.orders.domain import TERMINAL
from choreo.services.orders.store import OrderView, parse_order_id

CSRF_FIELD = "csrf_token"
OPERATOR_FIELD = "operator_token"

STYLE = """
body{font:14px/1.4 system-ui,sans-serif;margin:0;color:#1d232b;background:#f6f7f9}
header{background:#1d2b3a;color:#fff;padding:8px 16px;display:flex;gap:18px;align-items:center}
header a{color:#cfe0f5;text-decoration:none}header a.on{color:#fff;font-weight:600}
header strong{margin-right:12px}main{padding:12px 16px}
h1{font-size:20px;margin:8px 0}h2{font-size:16px;margin:18px 0 6px}
table{border-collapse:collapse;background:#fff;width:100%;margin-bottom:8px}
th,td{border-bottom:1px solid #e3e6ea;padding:3px 8px;text-align:left;vertical-align:top}
th{background:#eef1f4;font-weight:600}td.n{text-align:right;font-variant-numeric:tabular-nums}
code,.mono{font-family:ui-monospace,monospace;font-size:12px}
.badge{display:inline-block;padding:1px 8px;border-radius:9px;font-size:12px;color:#fff}
.PENDING{background:#b7791f}.CONFIRMED{background:#2f855a}.REJECTED{background:#9b2c2c}
.CANCELLED{background:#4a5568}.dead{background:#9b2c2c}.parked{background:#b7791f}
.replay,.discard{background:#2b6cb0}.replayed,.discarded{background:#4a5568}
.bar{position:relative;height:12px;background:#f0f2f5;min-width:360px}
.bar span{position:absolute;top:1px;bottom:1px;background:#5a8dd6;min-width:2px}
tr.slowest td{background:#fff3e0}tr.slowest .bar span{background:#dd6b20}
.mark{color:#c05621;font-weight:600}.note{color:#5a6472}.empty{color:#5a6472;padding:6px 0}
.notice{background:#e6fffa;border:1px solid #81e6d9;padding:6px 10px;margin:8px 0}
.problem{background:#fff5f5;border:1px solid #feb2b2;padding:6px 10px;margin:8px 0}
form.inline{display:inline}button{cursor:pointer}
.counts a{margin-right:14px}dl{display:grid;grid-template-columns:max-content 1fr;gap:2px 14px}
dt{color:#5a6472}dd{margin:0}pre{background:#fff;border:1px solid #e3e6ea;padding:8px;
overflow:auto}
"""

NAV = (("sagas", "/", "Sagas"), ("stuck", "/stuck", "Stuck"),
       ("dead-letters", "/dead-letters", "Dead letters"), ("stock", "/stock", "Stock"))


def esc(value: object) -> str:
    return escape("" if value is None else str(value), quote=True)


def layout(title: str, body: str, active: str = "") -> str:
    links = "".join(f'<a href="{href}"{" class=on" if key == active else ""}>{text}</a>'
                    for key, href, text in NAV)
    return ("<!doctype html><html lang=en><head><meta charset=utf-8>"
            f"<title>{esc(title)} · choreo</title><style>{STYLE}</style></head>"
            f"<body><header><strong>choreo console</strong>{links}</header>"
            f"<main>{body}</main></body></html>")


def when(moment: datetime | None) -> str:
    return "" if moment is None else f"{moment:%Y-%m-%d %H:%M:%S}"


def money(cents: int | None) -> str:
    return "" if cents is None else f"{cents / 100:,.2f}"


def badge(status: str) -> str:
    return f'<span class="badge {esc(status)}">{esc(status)}</span>'


def table(headers: Sequence[str], rows: Iterable[str], empty: str, table_id: str = "") -> str:
    body = "".join(rows)
    if not body:
        return f'<p class=empty{f" id={table_id}" if table_id else ""}>{esc(empty)}</p>'
    head = "".join(f"<th>{esc(h)}</th>" for h in headers)
    return f'<table{f" id={table_id}" if table_id else ""}><tr>{head}</tr>{body}</table>'


def is_order_key(key: str) -> bool:
    return parse_order_id(key) is not None


def saga_link(order_id: str) -> str:
    return f'<a class=mono href="/sagas/{quote(order_id)}">{esc(order_id)}</a>'


def items_text(items: list[dict[str, Any]]) -> str:
    return ", ".join(f"{item.get('quantity')}× {item.get('sku')}" for item in items)


def order_rows(orders: list[OrderView]) -> list[str]:
    return [f"<tr data-order={esc(o.id)}><td>{saga_link(o.id)}</td><td>{badge(o.status)}</td>"
            f"<td>{esc(o.reason)}</td><td>{esc(items_text(o.items))}</td>"
            f"<td class=n>{money(o.total_cents)}</td><td>{esc(o.customer_id)}</td>"
            f"<td>{when(o.created_at)}</td><td>{when(o.deadline_at)}</td></tr>"
            for o in orders]


ORDER_HEADERS = ("order", "status", "reason", "items", "total", "customer", "placed",
                 "deadline")


def overview_page(view: Overview, message: str | None = None) -> str:
    counts = " ".join(
        f'<a href="/?{urlencode({"status": status})}" data-status={esc(status)}>'
        f"{badge(status)} {count}</a>" for status, count in view.counts.items())
    total = sum(view.counts.values())
    heading = (f"Orders whose id starts with <code>{esc(view.query)}</code>" if view.query
               else f"Newest {esc(view.status) if view.status else ''} orders")
    return layout("Sagas", (
        "<h1>Sagas</h1>"
        f'<p class=counts><a href="/">all {total}</a>{counts}</p>'
        '<form method=get action="/" role=search>'
        f'<input id=search name=q size=40 placeholder="order id (or its start)"'
        f' value="{esc(view.query)}"> <button id=search-go>find</button></form>'
        + (f'<p class=problem id=message>{esc(message)}</p>' if message else "")
        + f"<h2>{heading}</h2>"
        + table(ORDER_HEADERS, order_rows(view.orders), "no orders", "orders")), "sagas")


def stuck_page(view: Stuck) -> str:
    overdue = table(ORDER_HEADERS, order_rows(view.overdue),
                    "none: every PENDING order is within its deadline", "overdue")
    blocked = table(("service", "consumer", "key", "head", "event", "status", "parked behind",
                     "reason"), (blocked_row(key) for key in view.blocked),
                    "none: no key is held back by a dead letter", "blocked")
    expiring = table(("order", "expires", "seconds left"), (
        f"<tr><td>{saga_link(r.order_id)}</td><td>{when(r.expires_at)}</td>"
        f"<td class=n>{r.seconds_left:,.0f}</td></tr>" for r in view.expiring),
        f"none: no reservation expires within {view.within_s:.0f}s", "expiring")
    return layout("Stuck sagas", (
        "<h1>Stuck sagas</h1>"
        "<h2>Past their deadline, still PENDING</h2>"
        "<p class=note>The deadline job cancels these within a second or so; one that stays"
        " here means the orders worker is not running its jobs.</p>" + overdue
        + "<h2>Keys held back by a dead letter</h2>"
        "<p class=note>Every later event of the key is parked until the dead letter is"
        " replayed or discarded.</p>" + blocked
        + f"<h2>Reservations expiring within {view.within_s:.0f}s</h2>"
        "<p class=note>Stock held for a saga that has not confirmed or released it;"
        " negative: expired, not swept yet.</p>" + expiring), "stuck")


def blocked_row(key: BlockedKey) -> str:
    head = key.head
    shown = saga_link(key.order_id) if key.order_id else f"<code>{esc(head.aggregate_key)}</code>"
    return (f"<tr><td>{esc(key.service)}</td><td>{esc(head.consumer)}</td><td>{shown}</td>"
            f"<td>{entry_link(key.service, head)}</td><td>{esc(head.event_type)}</td>"
            f"<td>{badge(head.status)}</td><td class=n>{key.parked}</td>"
            f"<td>{esc(head.reason[:120])}</td></tr>")


def entry_link(service: str, entry: DeadLetter) -> str:
    return f'<a href="/dead-letters/{quote(service)}/{entry.seq}">#{entry.seq}</a>'


@dataclass(frozen=True)
class Forms:
    """What the replay and discard forms carry: the process's CSRF token, and a field for
    the operator's credential where the console asks for one (``CHOREO_OPERATOR_TOKEN``)."""

    csrf_token: str
    asks_operator: bool = False


def action_forms(service: str, entry: DeadLetter, forms: Forms) -> str:
    """Replay and discard buttons: POST forms carrying the CSRF token (and the operator's
    credential, typed in); only a dead entry can be acted on (what is parked behind it
    follows it)."""
    if entry.status != "dead":
        return ""
    operator = (f'<input type=password name={OPERATOR_FIELD} placeholder="operator token"'
                ' autocomplete=off required> ' if forms.asks_operator else "")
    buttons = []
    for action in ("replay", "discard"):
        confirm = (' onsubmit="return confirm(\'Discard this event for good?\')"'
                   if action == "discard" else "")
        buttons.append(
            f'<form class=inline method=post action="/dead-letters/{quote(service)}/'
            f'{entry.seq}/{action}"{confirm}><input type=hidden name={CSRF_FIELD}'
            f' value="{esc(forms.csrf_token)}">{operator}<button name=action value={action}'
            f' data-action={action}>{action}</button></form>')
    return " ".join(buttons)


def dead_letter_rows(entries: list[ServiceEntry], forms: Forms) -> list[str]:
    rows = []
    for item in entries:
        e = item.entry
        key = (saga_link(e.aggregate_key) if is_order_key(e.aggregate_key)
               else f"<code>{esc(e.aggregate_key)}</code>")
        rows.append(
            f"<tr data-seq={e.seq} data-service={esc(item.service)}>"
            f"<td>{esc(item.service)}</td><td>{entry_link(item.service, e)}</td>"
            f"<td>{badge(e.status)}</td><td>{esc(e.consumer)}</td><td>{key}</td>"
            f"<td>{esc(e.event_type)}</td><td class=n>{e.attempts}</td>"
            f"<td>{esc(e.reason[:120])}</td><td>{action_forms(item.service, e, forms)}</td></tr>")
    return rows


DEAD_LETTER_HEADERS = ("service", "#", "status", "consumer", "key", "event", "attempts",
                       "reason", "")


def dead_letters_page(entries: list[ServiceEntry], include_done: bool, forms: Forms) -> str:
    toggle = ('<a href="/dead-letters">active only</a>' if include_done
              else '<a href="/dead-letters?all=1">include replayed and discarded</a>')
    return layout("Dead letters", (
        "<h1>Dead letters</h1>"
        "<p class=note>Replay and discard are requests: the owning consumer carries them out"
        f" within a second, then what is parked behind the entry, in order. {toggle}</p>"
        + table(DEAD_LETTER_HEADERS, dead_letter_rows(entries, forms), "no dead letters",
                "dead-letters")), "dead-letters")


def dead_letter_page(service: str, entry: DeadLetter, payload: dict[str, Any] | None,
                     payload_error: str | None, forms: Forms, notice: str | None = None) -> str:
    shown = (json.dumps(payload, indent=2, default=str) if payload is not None
             else f"(cannot decode: {payload_error})")
    facts = [("service", esc(service)), ("consumer", esc(entry.consumer)),
             ("status", f'<span id=entry-status>{badge(entry.status)}</span>'),
             ("key", saga_link(entry.aggregate_key) if is_order_key(entry.aggregate_key)
              else f"<code>{esc(entry.aggregate_key)}</code>"),
             ("event", f"{esc(entry.event_type)} <code>{esc(entry.event_id)}</code>"),
             ("reason", esc(entry.reason)), ("attempts", str(entry.attempts)),
             ("from", f"<code>{esc(entry.delivery.origin)}</code>"),
             ("recorded", esc(entry.created_at))]
    return layout(f"Dead letter #{entry.seq}", (
        f"<h1>Dead letter #{entry.seq} in {esc(service)}</h1>"
        + (f"<p class=notice id=notice>{esc(notice)}</p>" if notice else "")
        + "<dl>" + "".join(f"<dt>{k}</dt><dd>{v}</dd>" for k, v in facts) + "</dl>"
        + f"<p id=actions>{action_forms(service, entry, forms)}</p>"
        "<h2>Payload</h2>" f"<pre id=payload>{esc(shown)}</pre>"
        "<h2>Headers</h2>"
        f"<pre>{esc(json.dumps(entry.delivery.headers, indent=2, sort_keys=True))}</pre>"
        f"<h2>Raw value</h2><pre class=mono>{esc((entry.delivery.value or b'').hex())}</pre>"),
        "dead-letters")


def saga_page(saga: Saga, forms: Forms, with_sql: bool) -> str:
    order = saga.order
    settled = order.status in TERMINAL
    facts = [("status", f"<span id=status data-status={esc(order.status)}>"
                        f"{badge(order.status)}</span>"
                        + (f" {esc(order.reason)}" if order.reason else "")),
             ("items", esc(items_text(order.items))), ("total", money(order.total_cents)),
             ("customer", esc(order.customer_id)), ("placed", when(order.created_at)),
             ("deadline", when(order.deadline_at) + ("" if settled else " (still pending)")),
             ("last change", when(order.updated_at))]
    timeline = table(("after", "event", "from", "detail", "seen"), (
        f"<tr><td class=n>+{(h.seen_at - order.created_at).total_seconds():.3f}s</td>"
        f"<td>{esc(h.event_type)}</td><td>{esc(h.source)}</td>"
        f"<td class=mono>{esc(json.dumps(h.detail, default=str)[:160])}</td>"
        f"<td>{when(h.seen_at)}</td></tr>" for h in saga.history),
        "no events yet", "timeline")
    letters = table(DEAD_LETTER_HEADERS, dead_letter_rows(saga.dead_letters, forms),
                    "none for this order", "saga-dead-letters")
    told = table(("kind", "outcome", "channel", "message", "when"), (
        f"<tr><td>{esc(kind)}</td><td>{esc(status)}</td><td>{esc(channel or '-')}</td>"
        f"<td class=n>{message_id or '-'}</td><td>{when(at)}</td></tr>"
        for kind, status, channel, message_id, at in saga.told),
        "nothing owed yet", "saga-told")
    return layout(f"Saga {order.id}", (
        f"<h1>Saga <code>{esc(order.id)}</code></h1>"
        "<dl>" + "".join(f"<dt>{k}</dt><dd>{v}</dd>" for k, v in facts) + "</dl>"
        "<h2>Timeline (the events the order saw)</h2>" + timeline
        + trace_section(saga, with_sql)
        + "<h2>What the customer was told</h2>" + told
        + "<h2>Dead letters of this order</h2>" + letters), "sagas")


def trace_section(saga: Saga, with_sql: bool) -> str:
    spans = saga.spans
    if not spans:
        return f"<h2>Trace</h2><p class=empty id=no-trace>{esc(saga.trace_note)}</p>"
    every = waterfall.lines(spans)
    took = waterfall.total_ms(spans)
    worst = waterfall.slowest(every)
    shown = [line for line in every if with_sql or not waterfall.is_sql(line.span)]
    services = sorted({span.service for span in spans})
    rows = []
    for line in shown:
        left = line.offset_ms / took * 100 if took else 0.0
        width = line.span.duration_ms / took * 100 if took else 100.0
        is_worst = line is worst
        rows.append(
            f'<tr{" class=slowest" if is_worst else ""} data-service="{esc(line.span.service)}">'
            f"<td class=n>{line.offset_ms:,.0f} ms</td>"
            f"<td class=n>{line.span.duration_ms:,.1f} ms</td>"
            f"<td class=n>{line.own_ms:,.1f} ms</td><td>{esc(line.span.service)}</td>"
            f"<td>{esc(waterfall.label(line.span))}"
            + (' <span class=mark id=slowest-mark>◀ slowest</span>' if is_worst else "")
            + f'</td><td class=bar-cell><div class=bar><span style="left:{left:.2f}%;'
            f'width:{width:.2f}%"></span></div></td></tr>')
    hidden = len(every) - len(shown)
    sql_link = (f'<a href="?sql=1">show the {hidden} database statements</a>' if hidden
                else ('<a href="?">hide the database statements</a>' if with_sql else ""))
    hops = table(("hop", "committed → received", "to the broker", "then to the consumer"), (
        f"<tr><td>{esc(hop.route)}</td><td class=n>{hop.took_ms:,.1f} ms</td>"
        f"<td class=n>{'' if hop.cdc_ms is None else esc(hop.cdc_ms) + ' ms'}</td>"
        f"<td class=n>{'' if hop.delivery_ms is None else esc(hop.delivery_ms) + ' ms'}</td>"
        "</tr>" for hop in waterfall.hops(every)), "no hops in this trace", "hops")
    return (
        "<h2>Trace</h2>"
        f"<p id=trace-summary>trace <code>{esc(spans[0].trace_id)}</code>, {took:,.0f} ms,"
        f" {len(spans)} spans, {len(services)} services ({esc(', '.join(services))}). {sql_link}"
        "</p>"
        f"<p id=slowest>slowest: <strong>{esc(worst.span.service)}"
        f" {esc(waterfall.label(worst.span))}</strong>, {worst.own_ms:,.1f} ms of its own"
        " (its duration less what its children in the same service cover)</p>"
        + table(("start", "took", "own", "service", "span", ""), rows, "no spans", "waterfall")
        + "<h2>Hops (event committed → received)</h2>" + hops)


def stock_page(levels: list[StockLevel]) -> str:
    return layout("Stock", "<h1>Stock</h1>" + table(
        ("sku", "name", "price", "available", "reserved", "sold", "on hand"), (
            f'<tr data-sku="{esc(s.sku)}">'
            f"<td><code>{esc(s.sku)}</code></td><td>{esc(s.name)}</td>"
            f"<td class=n>{money(s.unit_price_cents)}</td><td class=n>{s.available}</td>"
            f"<td class=n>{s.reserved}</td><td class=n>{s.sold}</td>"
            f"<td class=n>{s.on_hand}</td></tr>" for s in levels), "no SKUs", "stock"),
        "stock")


def problem_page(title: str, message: str) -> str:
    return layout(title, f"<h1>{esc(title)}</h1><p class=problem id=message>{esc(message)}</p>")
