"""The psp's settings, read once from the environment at start-up.

Only ``__main__`` calls :meth:`PspSettings.from_env`; everything else receives the
frozen object, so no module discovers configuration behind the reader's back. A bad
value fails here, naming the variable, instead of as a confusing error on the first
request.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import TypeVar

import psycopg
from psycopg.conninfo import conninfo_to_dict

T = TypeVar("T", int, float)


class SettingsError(Exception):
    """A required variable is missing or a value is malformed; the message names it."""


@dataclass(frozen=True)
class PspSettings:
    database_url: str
    port: int = 18090
    slow_delay_s: float = 2.0
    """How long ``tok_slow`` takes: longer than a caller's timeout exercises its retries."""
    bind_host: str = "127.0.0.1"
    """Only containers (compose.yaml) listen elsewhere."""
    telemetry_url: str = ""
    """The span store's DSN (``outbox.span_store``); empty: spans are not kept."""

    @classmethod
    def from_env(cls, env: Mapping[str, str]) -> PspSettings:
        database_url = env.get("CHOREO_DATABASE_URL", "").strip()
        if not database_url:
            raise SettingsError("CHOREO_DATABASE_URL is required (the psp ledger's PostgreSQL DSN)")
        try:
            conninfo_to_dict(database_url)
        except psycopg.ProgrammingError as error:
            raise SettingsError(f"CHOREO_DATABASE_URL is not a valid DSN: {error}") from None
        port = _number(env, "CHOREO_PSP_PORT", int, cls.port)
        if not 1024 <= port <= 65535:
            raise SettingsError(f"CHOREO_PSP_PORT={port} is outside 1024..65535")
        slow_delay_s = _number(env, "CHOREO_PSP_SLOW_DELAY_S", float, cls.slow_delay_s)
        if not 0 <= slow_delay_s <= 300:
            raise SettingsError(f"CHOREO_PSP_SLOW_DELAY_S={slow_delay_s} is outside 0..300")
        return cls(database_url=database_url, port=port, slow_delay_s=slow_delay_s,
                   bind_host=env.get("CHOREO_BIND_HOST", "127.0.0.1"),
                   telemetry_url=env.get("CHOREO_TELEMETRY_URL", ""))


def _number(env: Mapping[str, str], name: str, kind: Callable[[str], T], default: T) -> T:
    raw = env.get(name)
    if raw is None:
        return default
    try:
        return kind(raw)
    except ValueError:
        raise SettingsError(f"{name}={raw!r} is not a number") from None
