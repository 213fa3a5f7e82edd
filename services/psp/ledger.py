"""The ledger's rows and the SQL that reads and writes them.

Functions take a connection rather than a pool so the caller decides the transaction:
a capture or refund runs inside the idempotency transaction of its key, and reads run
on their own.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from importlib import resources
from typing import Any

from psycopg import AsyncConnection
from psycopg.rows import class_row

from choreo.services.psp.payloads import ChargeRequest

SCHEMA = resources.files(__package__).joinpath("schema.sql").read_text()


@dataclass(frozen=True)
class Charge:
    id: str
    amount_cents: int
    currency: str
    reference: str
    amount_refunded_cents: int

    def as_json(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "status": "captured",
            "amount_cents": self.amount_cents,
            "currency": self.currency,
            "reference": self.reference,
            "amount_refunded_cents": self.amount_refunded_cents,
        }


@dataclass(frozen=True)
class Refund:
    id: str
    charge_id: str
    amount_cents: int

    def as_json(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "charge_id": self.charge_id,
            "amount_cents": self.amount_cents,
            "status": "succeeded",
        }


@dataclass(frozen=True)
class Summary:
    captured_cents: int
    refunded_cents: int
    charges: int
    refunds: int

    def as_json(self) -> dict[str, Any]:
        return {
            "captured_cents": self.captured_cents,
            "refunded_cents": self.refunded_cents,
            "charges": self.charges,
            "refunds": self.refunds,
        }


CHARGE_COLUMNS = """
    c.id, c.amount_cents, c.currency, c.reference,
    (SELECT coalesce(sum(r.amount_cents), 0) FROM refunds r WHERE r.charge_id = c.id)::bigint
        AS amount_refunded_cents
"""


async def apply_schema(conn: AsyncConnection[Any]) -> None:
    """Create the tables; the advisory lock keeps two starting processes from racing."""
    async with conn.transaction():
        await conn.execute("SELECT pg_advisory_xact_lock(hashtextextended('psp schema', 0))")
        await conn.execute(SCHEMA.encode())


async def insert_charge(conn: AsyncConnection[Any], idempotency_key: str,
                        request: ChargeRequest) -> Charge:
    charge = Charge(f"ch_{uuid.uuid4().hex}", request.amount_cents, request.currency,
                    request.reference, 0)
    await conn.execute(
        "INSERT INTO charges (id, idempotency_key, reference, amount_cents, currency)"
        " VALUES (%s, %s, %s, %s, %s)",
        (charge.id, idempotency_key, charge.reference, charge.amount_cents, charge.currency),
    )
    return charge


async def lock_charge(conn: AsyncConnection[Any], charge_id: str) -> Charge | None:
    """The charge with its refunds so far, locked until the transaction ends.

    The row lock serialises refunds of one charge, so two concurrent refunds cannot
    both see the same remaining amount. The refunds are summed in a second statement
    on purpose: under READ COMMITTED each statement takes a fresh snapshot, so only a
    statement that starts after the lock was granted sees the refunds committed by the
    transaction that held it before (a subquery of the locking statement would not).
    """
    cursor = await conn.execute("SELECT 1 FROM charges WHERE id = %s FOR UPDATE", (charge_id,))
    if await cursor.fetchone() is None:
        return None
    return await find_charge(conn, charge_id)


async def insert_refund(conn: AsyncConnection[Any], idempotency_key: str, charge_id: str,
                        amount_cents: int) -> Refund:
    refund = Refund(f"re_{uuid.uuid4().hex}", charge_id, amount_cents)
    await conn.execute(
        "INSERT INTO refunds (id, idempotency_key, charge_id, amount_cents)"
        " VALUES (%s, %s, %s, %s)",
        (refund.id, idempotency_key, refund.charge_id, refund.amount_cents),
    )
    return refund


async def find_charge(conn: AsyncConnection[Any], charge_id: str) -> Charge | None:
    async with conn.cursor(row_factory=class_row(Charge)) as cursor:
        await cursor.execute(f"SELECT {CHARGE_COLUMNS} FROM charges c WHERE c.id = %s",
                             (charge_id,))
        return await cursor.fetchone()


async def charges_with_reference(conn: AsyncConnection[Any], reference: str) -> list[Charge]:
    async with conn.cursor(row_factory=class_row(Charge)) as cursor:
        await cursor.execute(f"SELECT {CHARGE_COLUMNS} FROM charges c WHERE c.reference = %s"
                             " ORDER BY c.created_at, c.id", (reference,))
        return await cursor.fetchall()


async def summary(conn: AsyncConnection[Any]) -> Summary:
    """All four totals from one statement, hence one snapshot: they always agree."""
    async with conn.cursor(row_factory=class_row(Summary)) as cursor:
        await cursor.execute("""
            SELECT (SELECT coalesce(sum(amount_cents), 0) FROM charges)::bigint AS captured_cents,
                   (SELECT coalesce(sum(amount_cents), 0) FROM refunds)::bigint AS refunded_cents,
                   (SELECT count(*) FROM charges) AS charges,
                   (SELECT count(*) FROM refunds) AS refunds
        """)
        row = await cursor.fetchone()
    assert row is not None  # an aggregate without GROUP BY always yields one row
    return row
