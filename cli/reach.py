"""What a command needs running, looked at before it starts.

With the stack down, a command used to fail in its own way: a ``requests`` traceback
(``timeline``), a minute of librdkafka connection lines (``bench hop``), a header
printed before a PostgreSQL error (``dlq list``). A TCP connect to each port a command
needs answers in milliseconds, so every such command now ends with one line naming what
it could not reach, and exit status 2.
"""

from __future__ import annotations

import argparse
import socket
from collections.abc import Callable

from choreo.stack.errors import StackError
from choreo.stack.settings import StackSettings

Endpoint = Callable[[StackSettings], tuple[str, int]]

ENDPOINTS: dict[str, tuple[str, Endpoint]] = {
    "postgres": ("PostgreSQL", lambda s: ("127.0.0.1", s.postgres_port)),
    "broker": ("the broker", lambda s: ("127.0.0.1", s.kafka_port)),
    "orders-api": ("the orders API", lambda s: ("127.0.0.1", s.port_of("orders-api"))),
}

NEEDS: dict[tuple[str, ...], tuple[str, ...]] = {
    ("order",): ("orders-api",),
    ("timeline",): ("orders-api",),
    ("demo",): ("orders-api", "postgres"),
    ("stock",): ("postgres",),
    ("trace",): ("postgres",),
    ("dlq",): ("postgres",),
    ("events",): ("broker",),
    ("chaos",): ("orders-api", "postgres", "broker"),
    ("bench", "hop"): ("postgres", "broker"),
    ("bench", "relay"): ("postgres", "broker"),
    ("bench", "consumer"): ("postgres", "broker"),
    ("bench", "saga"): ("orders-api", "postgres", "broker"),
    ("bench", "soak"): ("orders-api", "postgres", "broker"),
    ("bench", "tracing"): ("orders-api", "postgres", "broker"),
}
"""By the command's words (``bench hop``), or its first word for all of its subcommands."""


def needs(args: argparse.Namespace) -> tuple[str, ...]:
    words = (args.command, getattr(args, "bench_command", None))
    return NEEDS.get(tuple(w for w in words if w), NEEDS.get((args.command,), ()))


def require(settings: StackSettings, wanted: tuple[str, ...]) -> None:
    """Raise ``StackError`` naming the first of ``wanted`` that does not accept a
    connection within a second."""
    for need in wanted:
        name, endpoint = ENDPOINTS[need]
        host, port = endpoint(settings)
        try:
            socket.create_connection((host, port), timeout=1.0).close()
        except OSError as error:
            raise StackError(f"cannot reach {name} at {host}:{port} ({error.strerror or error});"
                             " is the stack up? (choreo up)") from None
