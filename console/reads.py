"""What the console's pages show, read through each service's own store or catalog module.

No SQL of its own: orders through ``services.orders.store``, stock and reservations through
``services.inventory.catalog`` and ``.store``, dead letters through ``outbox.deadletter``
(in every database with an outbox), spans through ``console.waterfall``. Each function
opens short-lived autocommit connections, so a page never holds a lock or a snapshot
that a service would wait on. These are blocking calls: the app runs them in a thread.
"""

from __future__ import annotations

import functools
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import psycopg

from choreo.console import waterfall
from choreo.outbox import deadletter
from choreo.outbox import wire as c
from choreo.outbox.codec import EventCodec
from choreo.outbox.deadletter import DeadLetter
from choreo.outbox.errors import PoisonMessage
from choreo.outbox.span_store import StoredSpan
from choreo.schemas.catalog import SchemaCatalog
from choreo.services.inventory import catalog
from choreo.services.inventory import store as inventory_store
from choreo.services.inventory.catalog import StockLevel
from choreo.services.inventory.store import HeldReservation
from choreo.services.notification import handlers as notification_handlers
from choreo.services.orders import store as orders_store
from choreo.services.orders.store import HistoryEntry, OrderView
from choreo.stack import manifest
from choreo.stack.errors import StackError
from choreo.stack.settings import StackSettings

LIST_LIMIT = 100


@contextmanager
def connection(settings: StackSettings, database: str) -> Iterator[psycopg.Connection[Any]]:
    with psycopg.connect(settings.database_dsn(database), autocommit=True,
                         connect_timeout=3) as conn:
        yield conn


@dataclass(frozen=True)
class ServiceEntry:
    """A dead letter and the service database it is in (``seq`` is per database)."""

    service: str
    entry: DeadLetter


@dataclass(frozen=True)
class Overview:
    counts: dict[str, int]
    orders: list[OrderView]
    status: str | None
    query: str


def overview(settings: StackSettings, status: str | None, query: str) -> Overview:
    """Counts by status and the newest orders of ``status``, or those matching ``query``
    (the start of an order id)."""
    with connection(settings, "orders") as conn:
        counts = orders_store.status_counts(conn)
        if query:
            orders = orders_store.orders_with_id_prefix(conn, query, LIST_LIMIT)
        else:
            orders = orders_store.recent_orders(conn, status, LIST_LIMIT)
    return Overview(counts, orders, status, query)


@dataclass(frozen=True)
class BlockedKey:
    """A key a consumer holds back: its head dead letter and what is parked behind it."""

    service: str
    head: DeadLetter
    parked: int

    @property
    def order_id(self) -> str | None:
        return self.head.aggregate_key if orders_store.parse_order_id(
            self.head.aggregate_key) else None


@dataclass(frozen=True)
class Stuck:
    overdue: list[OrderView]
    blocked: list[BlockedKey]
    expiring: list[HeldReservation]
    within_s: float


def blocked_keys(entries: list[ServiceEntry]) -> list[BlockedKey]:
    """Active entries grouped by (service, consumer, key), the lowest seq as the head."""
    groups: dict[tuple[str, str, str], list[DeadLetter]] = {}
    for item in entries:
        key = (item.service, item.entry.consumer, item.entry.aggregate_key)
        groups.setdefault(key, []).append(item.entry)
    return [BlockedKey(service, min(group, key=lambda e: e.seq),
                       sum(e.status == "parked" for e in group))
            for (service, _, _), group in sorted(groups.items())]


def stuck(settings: StackSettings, within_s: float) -> Stuck:
    """Sagas that are not moving: PENDING past the deadline, keys held back by a dead
    letter, reservations that will expire (or did, unswept) within ``within_s``."""
    with connection(settings, "orders") as conn:
        overdue = orders_store.overdue_orders(conn, LIST_LIMIT)
    blocked = blocked_keys(dead_letters(settings, include_done=False))
    with connection(settings, "inventory") as conn:
        expiring = inventory_store.expiring_reservations(conn, within_s, LIST_LIMIT)
    return Stuck(overdue, blocked, expiring, within_s)


@dataclass(frozen=True)
class Saga:
    order: OrderView
    history: list[HistoryEntry]
    spans: list[StoredSpan]
    trace_note: str | None
    """Why there are no spans, when there are none."""
    dead_letters: list[ServiceEntry]
    told: list[tuple[Any, ...]]
    """(kind, status, channel, message id, when) of each message notification owes."""


def saga(settings: StackSettings, order_id: str) -> Saga | None:
    """The order, its history, its trace's spans and its dead letters; None: no such order."""
    parsed = orders_store.parse_order_id(order_id)
    if parsed is None:
        return None
    with connection(settings, "orders") as conn:
        order = orders_store.get_order(conn, parsed)
        if order is None:
            return None
        history = orders_store.get_history(conn, parsed)
    note = None
    try:
        spans = waterfall.saga_spans(settings, order.id, wait_s=0)
    except StackError as error:
        spans, note = [], str(error)
    if not spans and note is None:
        note = ("no spans in the span store yet (still being exported, sampled out, or older"
                " than its retention)")
    letters = []
    for service in manifest.databases(outbox=True):
        with connection(settings, service) as conn:
            letters += [ServiceEntry(service, entry)
                        for entry in deadletter.entries_for_keys(conn, [order.id])]
    with connection(settings, "notification") as conn:
        told = conn.execute(notification_handlers.TOLD, (order.id,)).fetchall()
    return Saga(order, history, spans, note, letters, told)


def dead_letters(settings: StackSettings, include_done: bool) -> list[ServiceEntry]:
    """Every service's dead letters (active ones, or all), by service and sequence."""
    found = []
    for service in manifest.databases(outbox=True):
        with connection(settings, service) as conn:
            found += [ServiceEntry(service, entry)
                      for entry in deadletter.list_entries(conn, include_done=include_done)]
    return found


@functools.cache
def codec() -> EventCodec:
    return EventCodec(SchemaCatalog.load())


def decoded_payload(entry: DeadLetter) -> tuple[dict[str, Any] | None, str | None]:
    """The entry's event as its schema reads it, or why it cannot be read (a poison
    message is often exactly that)."""
    value = entry.delivery.value
    schema = entry.delivery.headers.get(c.HEADER_DATASCHEMA)
    if value is None or not entry.event_type or not schema:
        return None, "no payload, event type or schema header to decode it with"
    try:
        return codec().decode(entry.event_type, schema, value), None
    except PoisonMessage as error:
        return None, str(error)


def dead_letter(settings: StackSettings, service: str, seq: int) -> DeadLetter | None:
    with connection(settings, service) as conn:
        return deadletter.get_entry(conn, seq)


def request(settings: StackSettings, service: str, seq: int, action: str) -> DeadLetter:
    """Ask ``service``'s consumer to replay or discard entry ``seq`` (LookupError: no such
    entry; ValueError: not a dead entry, or no such action)."""
    with connection(settings, service) as conn:
        return deadletter.request(conn, seq, action)


def stock(settings: StackSettings) -> list[StockLevel]:
    with connection(settings, "inventory") as conn:
        return catalog.stock_levels(conn)

