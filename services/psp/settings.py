"""The psp's settings, read once from the environment at start-up.

Only ``__main__`` calls :meth:`PspSettings.from_env`; everything else receives the
frozen object, so no module discovers configuration behind the reader's back. A bad
value fails here with ``outbox.errors.ConfigError``, naming the variable, instead of as
a confusing error on the first request.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from choreo.outbox import config
from choreo.outbox.tail_sampling import TailSampling


@dataclass(frozen=True)
class PspSettings:
    database_url: str
    port: int = 18090
    """Standalone; the stack passes its own (``CHOREO_PSP_PORT``, ``stack.manifest``)."""
    slow_delay_s: float = 2.0
    """How long ``tok_slow`` takes: longer than a caller's timeout exercises its retries."""
    bind_host: str = "127.0.0.1"
    """Only containers (compose.yaml) listen elsewhere."""
    telemetry_url: str = ""
    """The span store's DSN (``outbox.span_store``); empty: spans are not kept."""
    trace_sampling: TailSampling = TailSampling()
    """Which traces the span store keeps (``outbox.tail_sampling``)."""

    @classmethod
    def from_env(cls, env: Mapping[str, str]) -> PspSettings:
        return cls(
            database_url=config.dsn(env, "CHOREO_DATABASE_URL", "the psp ledger's PostgreSQL DSN"),
            port=config.port(env, "CHOREO_PSP_PORT", cls.port),
            slow_delay_s=config.number(env, "CHOREO_PSP_SLOW_DELAY_S", cls.slow_delay_s,
                                       ge=0, le=300),
            bind_host=config.text(env, "CHOREO_BIND_HOST", cls.bind_host),
            telemetry_url=config.dsn(env, "CHOREO_TELEMETRY_URL", "the span store's DSN",
                                     required=False),
            trace_sampling=TailSampling.from_env(env),
        )
