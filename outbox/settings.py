"""A service's runtime settings, built once at start-up from ``CHOREO_*`` variables.

Each service's ``__main__`` builds them (``ServiceSettings.from_env(name, os.environ)``)
and hands them to ``run_service``;
nothing below reads the environment. The variables are read with ``outbox.config``, so a
missing or malformed one fails here with its name, before any connection is opened.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

from choreo.outbox import config
from choreo.outbox.access import AccessSettings
from choreo.outbox.errors import ConfigError
from choreo.outbox.kafka_connection import KafkaConnection
from choreo.outbox.retry import Backoff
from choreo.outbox.tail_sampling import TailSampling
from choreo.outbox.topics import TopicSettings


@dataclass(frozen=True)
class ServiceSettings:
    service: str
    database_url: str
    kafka: KafkaConnection
    redis_url: str
    metrics_port: int
    backoff: Backoff
    redis_password: str = field(default="", repr=False)
    """``CHOREO_REDIS_PASSWORD`` (or ``_FILE``): kept out of the URL, which is configuration."""
    bind_host: str = "127.0.0.1"
    """Where HTTP endpoints listen; only containers (compose.yaml) need another address."""
    batch_size: int = 200
    dedupe_ttl_s: int = 7 * 24 * 3600
    outbox_retention_s: float = 900.0
    """How long outbox rows are kept, so a lost broker log can be published again."""
    inbox_retention_s: float = 7 * 24 * 3600.0
    dead_letter_retention_s: float = 30 * 24 * 3600.0
    """How long replayed and discarded dead letters stay listed (``choreo dlq list --all``)."""
    access: AccessSettings = AccessSettings()
    """Who may call an HTTP intake (``outbox.access``); consumers serve no writes."""
    topics: TopicSettings = TopicSettings()
    """How the topics it reads (and its dead-letter topic) are made, or that they must exist."""
    telemetry_url: str = ""
    """PostgreSQL DSN of the span store ``choreo trace`` reads; empty: spans are not kept."""
    trace_sampling: TailSampling = TailSampling()
    """Which traces the span store keeps (``outbox.tail_sampling``, ``CHOREO_TRACE_*``)."""

    @classmethod
    def from_env(cls, service: str, env: Mapping[str, str],
                 default_metrics_port: int = 0) -> ServiceSettings:
        """``default_metrics_port`` is where /health and /metrics listen without
        ``CHOREO_METRICS_PORT`` (0: any free port, logged); a platform that runs several
        services on one host passes each its own (choreo's stack does)."""
        database_url = config.dsn(env, "CHOREO_DATABASE_URL", "postgresql://user@host:port/db")
        backoff = Backoff(
            base_s=config.number(env, "CHOREO_RETRY_BASE_S", 0.05, ge=0),
            cap_s=config.number(env, "CHOREO_RETRY_CAP_S", 2.0, ge=0),
            max_attempts=config.integer(env, "CHOREO_RETRY_MAX_ATTEMPTS", 5, ge=1),
            transient_window_s=config.number(env, "CHOREO_RETRY_TRANSIENT_WINDOW_S", 120.0,
                                             ge=0),
            inline_window_s=config.number(env, "CHOREO_RETRY_INLINE_WINDOW_S", 1.0, ge=0),
        )
        settings = cls(
            service=service,
            database_url=database_url,
            kafka=KafkaConnection.from_env(env),
            redis_url=config.url(env, "CHOREO_REDIS_URL", "",
                                 schemes=("redis", "rediss", "unix")),
            redis_password=config.text(env, "CHOREO_REDIS_PASSWORD"),
            metrics_port=config.port(env, "CHOREO_METRICS_PORT", default_metrics_port),
            backoff=backoff,
            # 0 has always meant "one at a time" rather than an error.
            batch_size=max(1, config.integer(env, "CHOREO_BATCH_SIZE", 200, ge=0)),
            dedupe_ttl_s=config.integer(env, "CHOREO_DEDUPE_TTL_S", 7 * 24 * 3600, ge=0),
            bind_host=config.text(env, "CHOREO_BIND_HOST", "127.0.0.1"),
            outbox_retention_s=config.number(env, "CHOREO_OUTBOX_RETENTION_S", 900.0, ge=0),
            inbox_retention_s=config.number(env, "CHOREO_INBOX_RETENTION_S",
                                            7 * 24 * 3600.0, ge=0),
            dead_letter_retention_s=config.number(env, "CHOREO_DEAD_LETTER_RETENTION_S",
                                                  30 * 24 * 3600.0, ge=0),
            access=AccessSettings.from_env(env),
            topics=TopicSettings.from_env(env),
            telemetry_url=config.dsn(env, "CHOREO_TELEMETRY_URL", "the span store's DSN",
                                     required=False),
            trace_sampling=TailSampling.from_env(env),
        )
        if settings.inbox_retention_s <= settings.outbox_retention_s:
            raise ConfigError("CHOREO_INBOX_RETENTION_S must be greater than"
                              " CHOREO_OUTBOX_RETENTION_S: an event published again after a"
                              " broker loss must still find its inbox row")
        return settings
