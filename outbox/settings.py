"""A service's runtime settings, built once at start-up from ``CHOREO_*`` variables.

Nothing below a service's entry point reads the environment; a missing or malformed
variable fails here with its name, before any connection is opened.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass

from outbox.errors import ConfigError
from outbox.retry import Backoff


def env_number(env: Mapping[str, str], name: str, default: float, kind: type = int) -> float:
    raw = env.get(name)
    if raw is None or raw == "":
        return default
    try:
        value = kind(raw)
    except ValueError:
        raise ConfigError(f"{name}={raw!r} is not a valid {kind.__name__}") from None
    if value < 0:
        raise ConfigError(f"{name}={raw!r} must not be negative")
    return value


@dataclass(frozen=True)
class ServiceSettings:
    service: str
    database_url: str
    kafka_bootstrap: str
    redis_url: str
    metrics_port: int
    backoff: Backoff
    bind_host: str = "127.0.0.1"
    """Where HTTP endpoints listen; only containers (compose.yaml) need another address."""
    batch_size: int = 200
    dedupe_ttl_s: int = 7 * 24 * 3600
    outbox_retention_s: float = 900.0
    """How long outbox rows are kept, so a lost broker log can be published again."""
    inbox_retention_s: float = 7 * 24 * 3600.0
    dead_letter_retention_s: float = 30 * 24 * 3600.0
    """How long replayed and discarded dead letters stay listed (``choreo dlq list --all``)."""
    telemetry_url: str = ""
    """PostgreSQL DSN of the span store ``choreo trace`` reads; empty: spans are not kept."""

    @classmethod
    def from_env(cls, service: str, env: Mapping[str, str] | None = None,
                 default_metrics_port: int = 0) -> ServiceSettings:
        env = os.environ if env is None else env
        database_url = env.get("CHOREO_DATABASE_URL", "")
        if not database_url:
            raise ConfigError("CHOREO_DATABASE_URL is required (postgresql://user@host:port/db)")
        backoff = Backoff(
            base_s=env_number(env, "CHOREO_RETRY_BASE_S", 0.05, float),
            cap_s=env_number(env, "CHOREO_RETRY_CAP_S", 2.0, float),
            max_attempts=int(env_number(env, "CHOREO_RETRY_MAX_ATTEMPTS", 5)),
            transient_window_s=env_number(env, "CHOREO_RETRY_TRANSIENT_WINDOW_S", 120.0, float),
        )
        if backoff.max_attempts < 1:
            raise ConfigError("CHOREO_RETRY_MAX_ATTEMPTS must be at least 1")
        settings = cls(
            service=service,
            database_url=database_url,
            kafka_bootstrap=env.get("CHOREO_KAFKA_BOOTSTRAP", "127.0.0.1:19092"),
            redis_url=env.get("CHOREO_REDIS_URL", ""),
            metrics_port=int(env_number(env, "CHOREO_METRICS_PORT", default_metrics_port)),
            backoff=backoff,
            batch_size=max(1, int(env_number(env, "CHOREO_BATCH_SIZE", 200))),
            dedupe_ttl_s=int(env_number(env, "CHOREO_DEDUPE_TTL_S", 7 * 24 * 3600)),
            bind_host=env.get("CHOREO_BIND_HOST", "127.0.0.1"),
            outbox_retention_s=env_number(env, "CHOREO_OUTBOX_RETENTION_S", 900.0, float),
            inbox_retention_s=env_number(env, "CHOREO_INBOX_RETENTION_S", 7 * 24 * 3600.0,
                                         float),
            dead_letter_retention_s=env_number(env, "CHOREO_DEAD_LETTER_RETENTION_S",
                                               30 * 24 * 3600.0, float),
            telemetry_url=env.get("CHOREO_TELEMETRY_URL", ""),
        )
        if settings.inbox_retention_s <= settings.outbox_retention_s:
            raise ConfigError("CHOREO_INBOX_RETENTION_S must be greater than"
                              " CHOREO_OUTBOX_RETENTION_S: an event published again after a"
                              " broker loss must still find its inbox row")
        return settings
