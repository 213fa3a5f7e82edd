"""The running system as an outsider sees it: orders over HTTP, stock, money at the psp.

End-to-end tests and chaos runs check the guarantees through this view. Each caller
creates SKUs of its own, so runs sharing a stack never share stock and can assert exact
figures.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable
from typing import Any

import psycopg

from infra.saga_cli import TERMINAL, OrdersApi
from infra.settings import StackSettings
from services.psp.client import PspClient


class Shop:
    def __init__(self, settings: StackSettings) -> None:
        self.settings = settings
        self.api = OrdersApi(settings)
        self.psp = PspClient(f"http://127.0.0.1:{settings.psp_port}", timeout_s=10)

    def new_sku(self, available: int, unit_price_cents: int = 1000) -> str:
        sku = f"e2e-{uuid.uuid4().hex[:10]}"
        with psycopg.connect(self.settings.database_dsn("inventory")) as conn:
            conn.execute("INSERT INTO stock_items (sku, name, unit_price_cents, available)"
                         " VALUES (%s, %s, %s, %s)", (sku, sku, unit_price_cents, available))
        return sku

    def stock(self, sku: str) -> dict[str, int]:
        with psycopg.connect(self.settings.database_dsn("inventory")) as conn:
            available, reserved, sold = conn.execute(
                "SELECT available, reserved, sold FROM stock_items WHERE sku = %s", (sku,)
            ).fetchone()
        return {"available": available, "reserved": reserved, "sold": sold}

    def net_paid(self, order_id: str) -> tuple[int, int]:
        """(captured, refunded) at the psp for one order, as its ledger says."""
        charges = self.psp.charges_for(order_id)
        return (sum(c.amount_cents for c in charges),
                sum(c.amount_refunded_cents for c in charges))

    def place(self, sku: str, quantity: int, token: str = "tok_ok", **kwargs: Any) -> str:
        return self.api.place([{"sku": sku, "quantity": quantity}], token, **kwargs)["id"]

    def wait_for(self, order_id: str, condition: Callable[[dict[str, Any]], bool],
                 timeout_s: float = 60.0) -> dict[str, Any]:
        deadline = time.monotonic() + timeout_s
        while True:
            order = self.api.get(order_id)
            if condition(order):
                return order
            assert time.monotonic() < deadline, f"order never got there: {order}"
            time.sleep(0.1)

    def wait_terminal(self, order_id: str) -> dict[str, Any]:
        return self.wait_for(order_id, lambda o: o["status"] in TERMINAL)
