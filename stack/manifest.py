"""The services the stack runs, one entry each: the only list a new participant is added to.

A participant is a folder under ``services/`` (its handlers, its SQL, its entry point)
plus one :class:`Participant` here. Everything that used to keep a list of its own is
derived from :data:`MANIFEST`: the databases the stack creates and the ones it relays
outbox rows from (``stack.settings``), the processes it starts and stops in this order
(``stack.services``), which of them are consumers (replicas, drain, lag, ``status``),
the rolling restart's order (``stack.restart``), the chaos run's default targets
(``chaos.plan``), the links a fault proxy may cut, the contract check
(``choreo schemas contracts``, through each entry's ``definition``), and the Kubernetes
manifests (``stack.k8s``: a Deployment per entry).
``tests/stack/test_manifest.py`` adds a throw-away participant to a copy and checks that
each of those sees it.

Every reader asks these functions at call time rather than copying the list into a
constant of its own, so the test's patched copy reaches them all. Kept as Python rather
than a data file: entries are checked by the type checker and
cannot be misspelled into a silently ignored key.
"""

from __future__ import annotations

import importlib
import inspect
from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from choreo.outbox.runner import ServiceDefinition


@dataclass(frozen=True)
class Participant:
    name: str
    """The process's name: in the pid registry, logs, traces' service name, ``status``."""
    module: str
    """What ``python -m`` runs: ``choreo.services.payments``."""
    database: str
    """Its own PostgreSQL database (two processes of one service share it)."""
    port: int
    """The stack's default port for its ``/health`` (and ``/metrics``): a consumer's
    metrics port, an HTTP service's own port."""
    port_variable: str
    """``CHOREO_<...>_PORT``, the variable that moves ``port`` (tests shift them all)."""
    args: tuple[str, ...] = ()
    """After the module: ``worker`` or ``api`` for the two processes of orders."""
    consumer: bool = False
    """Consumes events: may run as several replicas (``CHOREO_REPLICAS``), is drained
    before the broker stops, reports lag, is waited for by chaos runs and restarts."""
    outbox: bool = True
    """Its database has an outbox, streamed by Debezium or polled."""
    participant: bool = True
    """False for the psp, which stands in for an external provider: it is not linked
    through fault proxies (its own callers' link to it is) and declares no events."""
    url_variable: str | None = None
    """``CHOREO_<...>_URL``: where its callers find it (``http://127.0.0.1:<port>`` in the
    stack, its Service in Kubernetes); None for a process no other one calls."""
    definition: str | None = None
    """``module:attribute``: its ``ServiceDefinition``, or a function that builds one
    from default settings without opening a connection. The contract check reads what it
    declares it emits and what its handlers consume. None for a process that serves no
    events (the psp) or shares another's definition (orders-api)."""


MANIFEST: tuple[Participant, ...] = (
    Participant("psp", "choreo.services.psp", "psp", 18090, "CHOREO_PSP_PORT",
                outbox=False, participant=False, url_variable="CHOREO_PSP_URL"),
    Participant("inventory", "choreo.services.inventory", "inventory", 18081,
                "CHOREO_INVENTORY_METRICS_PORT", consumer=True,
                definition="choreo.services.inventory.__main__:definition"),
    Participant("payments", "choreo.services.payments", "payments", 18082,
                "CHOREO_PAYMENTS_METRICS_PORT", consumer=True,
                definition="choreo.services.payments.__main__:definition"),
    Participant("orders-worker", "choreo.services.orders", "orders", 18084,
                "CHOREO_ORDERS_WORKER_METRICS_PORT", args=("worker",), consumer=True,
                definition="choreo.services.orders.__main__:DEFINITION"),
    Participant("orders-api", "choreo.services.orders", "orders", 18080, "CHOREO_ORDERS_PORT",
                args=("api",)),
    Participant("wallet-worker", "choreo.services.wallet", "wallet", 18086,
                "CHOREO_WALLET_WORKER_METRICS_PORT", args=("worker",), consumer=True,
                definition="choreo.services.wallet.__main__:DEFINITION"),
    Participant("users", "choreo.services.users", "users", 18091, "CHOREO_USERS_PORT",
                definition="choreo.services.users.__main__:DEFINITION"),
    Participant("wallet-api", "choreo.services.wallet", "wallet", 18092, "CHOREO_WALLET_PORT",
                args=("api",)),
    Participant("notifier", "choreo.services.notifier", "notifier", 18093,
                "CHOREO_NOTIFIER_PORT", outbox=False, participant=False,
                url_variable="CHOREO_NOTIFIER_URL"),
    Participant("notification", "choreo.services.notification", "notification", 18088,
                "CHOREO_NOTIFICATION_METRICS_PORT", consumer=True,
                definition="choreo.services.notification.__main__:definition"),
)
"""In start order, which is also the rolling restart's: the psp first (payments retries
it), the consumers, the intakes last (clients retry with their Idempotency-Key)."""


def databases(*, outbox: bool = False) -> tuple[str, ...]:
    """Each database once, in manifest order; ``outbox``: only those with an outbox."""
    return tuple(dict.fromkeys(p.database for p in MANIFEST if p.outbox or not outbox))


def consumers() -> tuple[str, ...]:
    """The consumer services, which may run as several replicas."""
    return tuple(p.name for p in MANIFEST if p.consumer)


def linked() -> tuple[str, ...]:
    """The services whose connections ``CHOREO_LINKS`` may route through a fault proxy."""
    return tuple(p.name for p in MANIFEST if p.participant)


def definition(participant: Participant) -> ServiceDefinition:
    """Its ``ServiceDefinition``, imported from its ``module:attribute`` at call time (the
    manifest itself imports no service), built if the attribute is a function."""
    if participant.definition is None:
        raise ValueError(f"{participant.name} declares no ServiceDefinition")
    module, _, attribute = participant.definition.partition(":")
    value = getattr(importlib.import_module(module), attribute)
    return value() if inspect.isfunction(value) else value


def named(name: str) -> Participant:
    return next(p for p in MANIFEST if p.name == name)


def names() -> tuple[str, ...]:
    return tuple(p.name for p in MANIFEST)
