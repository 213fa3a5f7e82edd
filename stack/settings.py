"""Where the embedded stack lives and which ports it uses.

Built once at start-up from ``CHOREO_*`` environment variables; nothing below the
command line reads the environment. Defaults avoid the well-known ports
(5432/6379/9092/8083) so the stack can run beside a developer's own servers.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, fields
from pathlib import Path

from stack.errors import ConfigError

REPO_ROOT = Path(__file__).resolve().parent.parent

SERVICE_DATABASES = ("orders", "inventory", "payments", "psp")
"""One database per service; psp is the stand-in external provider's ledger."""

TELEMETRY_DATABASE = "telemetry"
"""Where every process's spans are kept for ``choreo trace`` (``outbox.span_store``)."""

OUTBOX_DATABASES = ("orders", "inventory", "payments")
"""The databases whose outbox tables Debezium streams (the psp has no outbox)."""


@dataclass(frozen=True)
class StackSettings:
    state_dir: Path
    postgres_port: int = 15432
    redis_port: int = 16379
    kafka_port: int = 19092
    connect_port: int = 18083
    orders_port: int = 18080
    psp_port: int = 18090
    inventory_metrics_port: int = 18081
    payments_metrics_port: int = 18082
    orders_worker_metrics_port: int = 18084
    supervisor_metrics_port: int = 18085
    """The supervisor's /metrics: Connect's connector and task states, restarts."""
    console_port: int = 18087
    """The web console (``choreo console``), on 127.0.0.1 only."""
    cdc_poll_interval_ms: int = 10
    order_deadline_s: float = 30.0
    reservation_ttl_s: float = 120.0
    outbox_retention_s: float = 900.0
    """Outbox rows are kept this long and published again after a broker loss."""
    start_timeout_s: float = 90.0
    artifact_cache: Path | None = None
    """Where downloaded artifacts are kept; by default inside the state directory."""

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> StackSettings:
        """Read ``CHOREO_STATE_DIR`` and ``CHOREO_<FIELD>`` (upper case) overrides.

        A value that is not a valid number fails here, naming the variable, rather
        than as a confusing bind error minutes later.
        """
        env = os.environ if env is None else env
        state_dir = Path(env.get("CHOREO_STATE_DIR", REPO_ROOT / ".choreo")).resolve()
        values: dict[str, object] = {"state_dir": state_dir}
        if env.get("CHOREO_ARTIFACT_CACHE"):
            values["artifact_cache"] = Path(env["CHOREO_ARTIFACT_CACHE"]).resolve()
        for field in fields(cls):
            if field.name in ("state_dir", "artifact_cache"):
                continue
            name = f"CHOREO_{field.name.upper()}"
            if name not in env:
                continue
            raw = env[name]
            try:
                values[field.name] = float(raw) if field.type == "float" else int(raw)
            except ValueError:
                raise ConfigError(f"{name}={raw!r} is not a number") from None
        settings = cls(**values)  # type: ignore[arg-type]
        settings.validate()
        return settings

    def validate(self) -> None:
        for field in fields(self):
            value = getattr(self, field.name)
            if field.name.endswith("_port") and not 1024 <= value <= 65535:
                raise ConfigError(
                    f"CHOREO_{field.name.upper()}={value} is outside 1024..65535"
                )
        if self.reservation_ttl_s <= self.order_deadline_s:
            # A reservation must outlive the order's deadline, or an order could be
            # confirmed after its stock went back on the shelf.
            raise ConfigError(
                f"CHOREO_RESERVATION_TTL_S={self.reservation_ttl_s} must be greater than"
                f" CHOREO_ORDER_DEADLINE_S={self.order_deadline_s}"
            )
        ports = [getattr(self, f.name) for f in fields(self) if f.name.endswith("_port")]
        if len(set(ports)) != len(ports):
            raise ConfigError(f"two components were given the same port: {sorted(ports)}")

    @property
    def kafka_bootstrap(self) -> str:
        return f"127.0.0.1:{self.kafka_port}"

    @property
    def redis_url(self) -> str:
        return f"redis://127.0.0.1:{self.redis_port}/0"

    @property
    def connect_url(self) -> str:
        return f"http://127.0.0.1:{self.connect_port}"

    def database_dsn(self, database: str) -> str:
        return f"postgresql://postgres@127.0.0.1:{self.postgres_port}/{database}"

    def service_env(self, database: str, metrics_port: int) -> dict[str, str]:
        """The environment a service process needs: where the stack is, and its own ports."""
        return {
            "CHOREO_DATABASE_URL": self.database_dsn(database),
            "CHOREO_METRICS_PORT": str(metrics_port),
            "CHOREO_KAFKA_BOOTSTRAP": self.kafka_bootstrap,
            "CHOREO_REDIS_URL": self.redis_url,
            "CHOREO_ORDERS_PORT": str(self.orders_port),
            "CHOREO_PSP_PORT": str(self.psp_port),
            "CHOREO_PSP_URL": f"http://127.0.0.1:{self.psp_port}",
            "CHOREO_ORDER_DEADLINE_S": str(self.order_deadline_s),
            "CHOREO_RESERVATION_TTL_S": str(self.reservation_ttl_s),
            "CHOREO_OUTBOX_RETENTION_S": str(self.outbox_retention_s),
            "CHOREO_TELEMETRY_URL": self.database_dsn(TELEMETRY_DATABASE),
        }

    # Folders inside the state directory, one place so nothing guesses a path.
    @property
    def pid_dir(self) -> Path:
        return self.state_dir / "pids"

    @property
    def log_dir(self) -> Path:
        return self.state_dir / "logs"

    @property
    def artifact_dir(self) -> Path:
        return self.artifact_cache or self.state_dir / "artifacts"

    @property
    def postgres_data_dir(self) -> Path:
        return self.state_dir / "postgres"

    @property
    def connect_dir(self) -> Path:
        return self.state_dir / "connect"
