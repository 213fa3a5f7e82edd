"""compose.yaml's names for its servers, turned into the test stack's loopback addresses.

A container finds Kafka at ``kafka1:9092``, PostgreSQL at ``postgres:5432``, the psp at
``psp:18090`` and its secrets under ``/run/secrets``. Run on this machine instead, the
same command and environment must point at the embedded test stack, at the processes the
test starts in place of the other containers, and at a folder holding the secret files.
Nothing else of a value is changed, so whatever compose gives a process is what runs.
"""

from __future__ import annotations

import socket
from dataclasses import dataclass, field


@dataclass
class Loopback:
    addresses: dict[str, str] = field(default_factory=dict)
    """``host:port`` as compose names it (inside any value) -> ``127.0.0.1:port``."""
    tokens: dict[str, str] = field(default_factory=dict)
    """A whole argument or value: a bare host (``--postgres-host postgres``), a bare port
    (``CHOREO_PSP_PORT: "18090"``), the address a container listens on (``0.0.0.0``)."""
    prefixes: dict[str, str] = field(default_factory=dict)
    """A path prefix: ``/run/secrets/`` -> the test's secret folder."""

    def value(self, text: str) -> str:
        if text in self.tokens:
            return self.tokens[text]
        for old, new in (*self.addresses.items(), *self.prefixes.items()):
            text = text.replace(old, new)
        return text

    def argv(self, argv: list[str]) -> list[str]:
        return [self.value(part) for part in argv]

    def env(self, env: dict[str, str]) -> dict[str, str]:
        return {name: self.value(value) for name, value in env.items()}


class Ports:
    """Free loopback ports below the kernel's ephemeral range (docs/stack.md says why),
    counted up from ``start``, each handed out once."""

    def __init__(self, start: int) -> None:
        self.next = start

    def take(self) -> int:
        while True:
            port, self.next = self.next, self.next + 1
            with socket.socket() as probe:
                try:
                    probe.bind(("127.0.0.1", port))
                except OSError:
                    continue
            return port
