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
import requests

from choreo.services.inventory import catalog
from choreo.services.inventory.catalog import CatalogItem
from choreo.services.notification import handlers as notification_handlers
from choreo.services.payments.psp_client import PspClient
from choreo.stack.settings import StackSettings
from choreo.testkit.orders_client import TERMINAL, OrdersClient


class Shop:
    def __init__(self, settings: StackSettings) -> None:
        self.settings = settings
        self.api = OrdersClient(settings.port_of("orders-api"), api_key=settings.api_key)
        self.auth = {"Authorization": f"Bearer {settings.api_key}"} if settings.api_key else {}
        """For the users and wallet intakes, where they authenticate their callers."""
        self.psp = PspClient(f"http://127.0.0.1:{settings.port_of('psp')}", timeout_s=10)
        self.wallet_url = f"http://127.0.0.1:{settings.port_of('wallet-api')}"
        self.users_url = f"http://127.0.0.1:{settings.port_of('users')}"
        self.notifier_url = f"http://127.0.0.1:{settings.port_of('notifier')}"

    def new_sku(self, available: int, unit_price_cents: int = 1000) -> str:
        sku = f"e2e-{uuid.uuid4().hex[:10]}"
        with psycopg.connect(self.settings.database_dsn("inventory")) as conn:
            catalog.stock_up(conn, [CatalogItem(sku, sku, unit_price_cents, available)])
        return sku

    def stock(self, sku: str) -> dict[str, int]:
        with psycopg.connect(self.settings.database_dsn("inventory")) as conn:
            level = catalog.levels_of(conn, [sku])[sku]
        return {"available": level.available, "reserved": level.reserved, "sold": level.sold}

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
            if time.monotonic() >= deadline:
                raise TimeoutError(f"order never got there: {order}")
            time.sleep(0.1)

    def wait_terminal(self, order_id: str) -> dict[str, Any]:
        return self.wait_for(order_id, lambda o: o["status"] in TERMINAL)

    def register(self, email: str) -> str:
        """A customer of the users service who wants email; its id."""
        response = requests.post(f"{self.users_url}/customers", json={
            "name": "Chaos", "email": email,
            "preferences": {"channel": "email", "address": "Berlin"}},
            headers={"Idempotency-Key": str(uuid.uuid4()), **self.auth}, timeout=10)
        response.raise_for_status()
        return str(response.json()["id"])

    def wait_known_to_notification(self, customer: str, timeout_s: float = 60.0) -> None:
        """Until notification has read the registration: an order before that would be a
        guest's, and its customer would rightly hear nothing."""
        deadline = time.monotonic() + timeout_s
        with psycopg.connect(self.settings.database_dsn("notification"), autocommit=True) as conn:
            while conn.execute(notification_handlers.RECIPIENT, (customer,)).fetchone() is None:
                if time.monotonic() > deadline:
                    raise TimeoutError(f"notification never heard of customer {customer}")
                time.sleep(0.2)

    def messages_about(self, order_id: str) -> list[str]:
        """The kind of each message the notifier sent about an order, from its ledger."""
        response = requests.get(f"{self.notifier_url}/messages",
                                params={"reference": order_id}, timeout=10)
        response.raise_for_status()
        return [message["idempotency_key"].rpartition(":")[2] for message in response.json()]

    def top_up(self, customer: str, amount_cents: int) -> int:
        """Money into a customer's wallet (its own Idempotency-Key); the new balance."""
        response = requests.post(f"{self.wallet_url}/wallets/{customer}/topups",
                                 json={"amount_cents": amount_cents},
                                 headers={"Idempotency-Key": str(uuid.uuid4()), **self.auth},
                                 timeout=10)
        response.raise_for_status()
        return int(response.json()["balance_cents"])

    def wallet(self, customer: str) -> tuple[int, int]:
        """(balance, points) of a customer's wallet; (0, 0) before it has one."""
        response = requests.get(f"{self.wallet_url}/wallets/{customer}", headers=self.auth,
                                timeout=10)
        if response.status_code == 404:
            return 0, 0
        response.raise_for_status()
        return response.json()["balance_cents"], response.json()["points"]
