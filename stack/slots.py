"""Logical replication slots, created before anything writes to an outbox.

A slot keeps every change from the moment it is created until its consumer confirms
it. Debezium would create its slot itself, but only when its connector first starts:
whatever a service commits before that is behind the slot's start and is never
decoded. So the launcher creates each outbox database's slot in its migration step,
with the name and output plugin the connector template says, and Debezium (with
``snapshot.mode=no_data`` and no offsets) then streams from the slot's confirmed
position instead of from "now".
"""

from __future__ import annotations

import psycopg
from psycopg import errors

from choreo.outbox.wire import OUTBOX_TEMPLATE, render
from choreo.stack import manifest
from choreo.stack.connectors import template_values
from choreo.stack.errors import ConfigError
from choreo.stack.settings import StackSettings


def ensure_replication_slot(dsn: str, database: str, slot: str, plugin: str) -> bool:
    """Create ``slot`` in ``database`` unless it exists. Returns whether it was created.

    A slot of that name with another plugin or in another database is a config error:
    Debezium would refuse it later with a less helpful message.
    """
    query = "SELECT plugin, database FROM pg_replication_slots WHERE slot_name = %s"
    with psycopg.connect(dsn, autocommit=True) as conn:
        existing = conn.execute(query, (slot,)).fetchone()
        if existing is None:
            try:
                conn.execute("SELECT pg_create_logical_replication_slot(%s, %s)", (slot, plugin))
            except errors.DuplicateObject:
                existing = conn.execute(query, (slot,)).fetchone()  # created meanwhile
            else:
                return True
    if existing is not None and tuple(existing) != (plugin, database):
        raise ConfigError(
            f"slot.name: replication slot {slot!r} exists with plugin {existing[0]!r} in"
            f" database {existing[1]!r}, the connector needs {plugin!r} in {database!r}"
        )
    return False


def connector_config(settings: StackSettings, database: str) -> dict[str, str]:
    """``database``'s outbox connector config, rendered from the template."""
    config: dict[str, str] = render(OUTBOX_TEMPLATE, template_values(settings, database))["config"]
    return config


def outbox_slot(settings: StackSettings, database: str) -> tuple[str, str]:
    """The slot name and plugin of ``database``'s connector."""
    config = connector_config(settings, database)
    return config["slot.name"], config["plugin.name"]


def ensure_outbox_slots(settings: StackSettings,
                        databases: tuple[str, ...] | None = None) -> list[str]:
    """Every outbox database's slot (or those of ``databases``); returns the names of
    those created just now."""
    created = []
    for database in databases or manifest.databases(outbox=True):
        slot, plugin = outbox_slot(settings, database)
        if ensure_replication_slot(settings.database_dsn(database), database, slot, plugin):
            created.append(slot)
    return created
