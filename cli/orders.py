"""``choreo order``, ``timeline``, ``demo`` and ``stock``: the saga from a user's seat.

Everything goes through the public HTTP API of the order service, exactly as a client
would use it; the timeline is the order's own history of the events it saw.
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import psycopg

from choreo.cli.output import add_json_flag, print_json
from choreo.services.notification.handlers import KIND_OF
from choreo.stack.settings import StackSettings
from choreo.testkit.orders_client import TERMINAL, OrdersClient, saga_settled
from choreo.testkit.shop import Shop


def orders_api(settings: StackSettings) -> OrdersClient:
    """The orders intake, with the key of ``CHOREO_API_KEY`` if the intake wants one."""
    return OrdersClient(settings.port_of("orders-api"), api_key=settings.api_key)


def follow(api: OrdersClient, order_id: str, settle_after: Callable[[dict[str, Any]], bool],
           timeout_s: float = 60.0, show: bool = True) -> dict[str, Any]:
    """Print each new history entry as it arrives, until ``settle_after(order)`` holds."""
    shown = 0
    started = time.monotonic()
    order = api.get(order_id)
    while time.monotonic() - started < timeout_s:
        order = api.get(order_id)
        for entry in order["history"][shown:]:
            if show:
                detail = entry["detail"].get("reason") or entry["detail"].get("total_cents") \
                    or entry["detail"].get("amount_cents") or ""
                print(f"  +{time.monotonic() - started:6.2f}s  {entry['event_type']:<24}"
                      f"{entry['source']:<11}{detail}")
        shown = len(order["history"])
        if settle_after(order):
            break
        time.sleep(0.1)
    return order


def cmd_order(args: argparse.Namespace, settings: StackSettings) -> int:
    api = orders_api(settings)
    accepted = api.place([{"sku": args.sku, "quantity": args.quantity}], args.token,
                         args.customer, args.deadline)
    print(f"order {accepted['id']} accepted ({accepted['status_url']})")
    order = follow(api, accepted["id"], saga_settled, args.timeout)
    print(f"=> {order['status']}" + (f" ({order['reason']})" if order["reason"] else ""))
    return 0 if order["status"] in TERMINAL else 1


def cmd_timeline(args: argparse.Namespace, settings: StackSettings) -> int:
    order = follow(orders_api(settings), args.order_id, lambda order: True, show=not args.json)
    kinds = Shop(settings).messages_about(order["id"])
    if args.json:
        print_json({**order, "told": kinds})
        return 0
    print(f"=> {order['status']}" + (f" ({order['reason']})" if order["reason"] else ""))
    print(f"told: {', '.join(kinds) if kinds else 'nothing (yet, or a guest, or channel none)'}")
    return 0


@dataclass(frozen=True)
class Scenario:
    name: str
    items: list[dict[str, Any]]
    token: str
    expected: str
    deadline_s: float | None = None
    cancel_when_confirmed: bool = False
    method: str = "card"


DEMO_WALLET_CENTS = 3000
"""The demo customer's top-up: the wallet order fits (2 × 1250), the second is short."""
SCENARIOS = (
    Scenario("success", [{"sku": "mug-white", "quantity": 2}], "tok_ok", "CONFIRMED"),
    Scenario("out of stock", [{"sku": "print-signed", "quantity": 50}], "tok_ok", "REJECTED"),
    Scenario("payment declined", [{"sku": "cap-navy", "quantity": 1}], "tok_decline",
             "CANCELLED"),
    Scenario("customer cancel after confirm", [{"sku": "notebook-a5", "quantity": 3}], "tok_ok",
             "CANCELLED", cancel_when_confirmed=True),
    Scenario("timeout (slow payment)", [{"sku": "sticker-pack", "quantity": 4}], "tok_slow",
             "CANCELLED", deadline_s=1),
    Scenario("paid by wallet", [{"sku": "mug-white", "quantity": 2}], "", "CONFIRMED",
             method="wallet"),
    Scenario("wallet short", [{"sku": "hoodie-grey-l", "quantity": 1}], "", "CANCELLED",
             method="wallet"),
)
TOLD_WITHIN_S = 15.0


def run_scenario(api: OrdersClient, scenario: Scenario, customer: str) -> dict[str, Any]:
    accepted = api.place(scenario.items, scenario.token, customer, scenario.deadline_s,
                         method=scenario.method)
    if scenario.cancel_when_confirmed:
        follow(api, accepted["id"], lambda o: o["status"] in TERMINAL, show=False)
        api.cancel(accepted["id"])
    return follow(api, accepted["id"], saga_settled, show=False)


def told(shop: Shop, order: dict[str, Any]) -> list[str]:
    """The messages the customer got about the order, by kind, once all that are owed
    arrived (or ``TOLD_WITHIN_S`` passed)."""
    owed = {KIND_OF[entry["event_type"]] for entry in order["history"]
            if entry["event_type"] in KIND_OF}
    deadline = time.monotonic() + TOLD_WITHIN_S
    while True:
        kinds = sorted(shop.messages_about(order["id"]))
        if set(kinds) >= owed or time.monotonic() > deadline:
            return kinds
        time.sleep(0.2)


def cmd_demo(args: argparse.Namespace, settings: StackSettings) -> int:
    """Every path, as one registered customer (email, a small wallet), with what the
    customer was told about each order."""
    api, shop = orders_api(settings), Shop(settings)
    customer = shop.register(f"demo-{int(time.time())}@example.org")
    shop.top_up(customer, DEMO_WALLET_CENTS)
    shop.wait_known_to_notification(customer)
    failures = 0
    print(f"customer {customer}: email, wallet {DEMO_WALLET_CENTS / 100:.2f}")
    print(f"{'scenario':<32}{'outcome':<11}{'reason':<22}{'told':<32}events")
    for scenario in SCENARIOS:
        order = run_scenario(api, scenario, customer)
        kinds = told(shop, order)
        ok = order["status"] == scenario.expected and saga_settled(order)
        failures += not ok
        events = " > ".join(entry["event_type"] for entry in order["history"])
        print(f"{scenario.name:<32}{order['status']:<11}{(order['reason'] or '-')[:20]:<22}"
              f"{', '.join(kinds) or '-':<32}{events}"
              f"{'' if ok else '   <-- expected ' + scenario.expected}")
    balance, points = shop.wallet(customer)
    print(f"wallet: {balance / 100:.2f} left, {points} points")
    return 1 if failures else 0


def register(commands: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    order = commands.add_parser("order", help="place an order and follow its saga")
    order.add_argument("--sku", default="mug-white", help="what to order")
    order.add_argument("--quantity", type=int, default=1, help="how many")
    order.add_argument("--token", default="tok_ok",
                       help="psp test token: tok_ok, tok_decline, tok_insufficient, tok_slow, ...")
    order.add_argument("--customer", default="cli", help="the customer id")
    order.add_argument("--deadline", type=float, default=None, help="seconds before timeout")
    order.add_argument("--timeout", type=float, default=60.0, help="stop following after")
    order.set_defaults(handler=cmd_order)
    timeline = commands.add_parser("timeline", help="show a saga's events so far")
    timeline.add_argument("order_id", help="the order's id")
    add_json_flag(timeline)
    timeline.set_defaults(handler=cmd_timeline)
    commands.add_parser("demo", help="success, out of stock, declined, cancel, timeout,"
                        " paid by wallet, wallet short; and what the customer was told"
                        ).set_defaults(handler=cmd_demo)
    stock = commands.add_parser("stock", help="the inventory's counters; --set SKU=N restocks")
    stock.add_argument("--set", action="append", metavar="SKU=N",
                       help="set a SKU's available units (repeatable)")
    add_json_flag(stock)
    stock.set_defaults(handler=cmd_stock)


def cmd_stock(args: argparse.Namespace, settings: StackSettings) -> int:
    """Show the catalog's counters; ``--set SKU=N`` restocks (or writes off) first."""
    from choreo.services.inventory.catalog import set_stock, stock_levels
    from choreo.services.inventory.domain import InvalidStockLevel, UnknownSku

    with psycopg.connect(settings.database_dsn("inventory")) as conn:
        for assignment in args.set or []:
            sku, _, raw = assignment.partition("=")
            try:
                set_stock(conn, sku, int(raw))
            except (ValueError, UnknownSku, InvalidStockLevel) as error:
                print(f"--set {assignment}: {error}")
                return 1
        levels = stock_levels(conn)
    if args.json:
        print_json([{"sku": level.sku, "unit_price_cents": level.unit_price_cents,
                     "available": level.available, "reserved": level.reserved,
                     "sold": level.sold} for level in levels])
        return 0
    print(f"{'sku':<16}{'price':>9}{'available':>11}{'reserved':>10}{'sold':>7}")
    for level in levels:
        print(f"{level.sku:<16}{level.unit_price_cents / 100:>9.2f}{level.available:>11}"
              f"{level.reserved:>10}{level.sold:>7}")
    return 0
