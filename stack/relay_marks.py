"""Whether every outbox database's relay has published what was committed before a moment.

The stack-wide side of :mod:`choreo.outbox.relayed`: one mark per outbox database, in
the terms of the relay that carries it (Debezium's slot, or the polling relay's
position), and the databases whose relay has not passed its mark yet.
"""

from __future__ import annotations

import psycopg

from choreo.outbox import relayed
from choreo.stack import manifest
from choreo.stack.settings import StackSettings
from choreo.stack.slots import connector_config

Marks = dict[str, relayed.Mark]


def relay_of(settings: StackSettings, database: str) -> tuple[str | None, str]:
    """The replication slot and heartbeat statement of ``database``'s connector, or
    (None, "") when the polling relay carries it."""
    if settings.relay_mode(database) != "cdc":
        return None, ""
    config = connector_config(settings, database)
    return config["slot.name"], config["heartbeat.action.query"]


def mark_relays(settings: StackSettings) -> Marks:
    marks: Marks = {}
    for database in manifest.databases(outbox=True):
        slot, heartbeat = relay_of(settings, database)
        with psycopg.connect(settings.database_dsn(database), autocommit=True) as conn:
            marks[database] = relayed.mark(conn, slot, heartbeat)
    return marks


def relays_behind(settings: StackSettings, marks: Marks) -> list[str]:
    """The databases whose relay has not published everything before its mark, in words."""
    behind = []
    for database, mark in marks.items():
        slot, _ = relay_of(settings, database)
        with psycopg.connect(settings.database_dsn(database), autocommit=True) as conn:
            if not relayed.reached(conn, slot, mark):
                behind.append(f"{database}'s outbox not relayed")
    return behind
