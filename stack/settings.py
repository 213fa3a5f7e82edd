"""Where the embedded stack lives and which ports it uses.

Built once at start-up from ``CHOREO_*`` environment variables (by the command line,
and by the supervisor process it starts); nothing below them reads the environment. The
variables are read with ``outbox.config``. The infrastructure's default ports are
:data:`INFRASTRUCTURE_PORTS`; each service's comes from its entry in ``stack.manifest``.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field, fields
from pathlib import Path
from types import MappingProxyType

from choreo.outbox import config
from choreo.outbox.kafka_connection import KafkaConnection
from choreo.stack import manifest
from choreo.stack.errors import ConfigError

REPO_ROOT = Path(__file__).resolve().parent.parent

INFRASTRUCTURE_PORTS: Mapping[str, int] = MappingProxyType({
    "postgres": 15432,
    "redis": 16379,
    "kafka": 19092,
    "kafka_controller": 19093,
    "connect": 18083,
    "supervisor_metrics": 18085,
    "console": 18087,
    "links": 18200,
})
"""The default port of each ``<key>_port`` field of :class:`StackSettings`
(``CHOREO_<KEY>_PORT`` moves one). They avoid the well-known ports (5432/6379/9092/8083)
so the stack can run beside a developer's own servers. ``links`` is the control endpoint
of the fault proxies a chaos run cuts links with (``stack.links``); the proxies listen on
the ports right after it, up to one per participant and dependency (8 x 4 = 32), clear of
the services' ports and of their second replicas' (+100). The services' ports are in
``stack.manifest``."""

REPLICA_PORT_STEP = 100
"""Replica k (k >= 2) of a consumer service serves its health and metrics on the
service's port + (k - 1) * 100: ``payments-2`` on 18182, ``inventory-3`` on 18281. Derived,
not listed, so a test offset that moves a service's port moves its replicas' too;
``StackSettings.validate`` checks every port the replicas get against all the others."""

TELEMETRY_DATABASE = "telemetry"
"""Where every process's spans are kept for ``choreo trace`` (``outbox.span_store``)."""
SAGA_STARTED_BY = ("OrderPlaced",)
"""The event that begins a saga: its trace waits for the saga to settle."""
SAGA_SETTLED_BY = ("OrderConfirmed", "OrderRejected", "OrderCancelled")
"""The events that end a saga: its trace is decided once it has been quiet after one."""
SAGA_TROUBLE = ("OrderRejected", "OrderCancelled", "StockReservationFailed", "StockReleased",
                "PaymentDeclined", "PaymentRefunded", "WalletDebitDeclined", "WalletRefunded")
"""A refusal or a compensation: a trace that wrote one is always kept."""

RELAY_MODES = ("cdc", "polling")

MAX_REPLICAS = 8
"""More replicas than a topic has partitions only adds idle standbys; 8 keeps the derived
ports (+100 per replica) clear of the next thousand."""


MAX_BROKERS = 5
BROKER_PORT_STEP = 2
"""Node N's ports are node 1's plus 2(N-1): 19092/19093, 19094/19095, 19096/19097."""


def recorded_brokers(state_dir: Path) -> int | None:
    """How many nodes the broker log in ``state_dir`` was made by (``stack.broker`` writes
    it at format), so ``choreo status`` or ``down`` after ``up --brokers 3`` need no flag."""
    try:
        return int((state_dir / "kafka" / "brokers").read_text())
    except (FileNotFoundError, ValueError):
        return None


KAFKA_SECURITY = ("plaintext", "sasl_ssl")
SCRAM_USER = "choreo"
"""The user the embedded broker's log is formatted with (``stack.kafka_security``)."""
SCRAM_MECHANISM = "SCRAM-SHA-512"


def recorded_kafka_security(state_dir: Path) -> str | None:
    """How the embedded broker served its listeners when it last started, so ``choreo
    status`` or ``down`` after a secured ``up`` reach it without the variable."""
    try:
        return (state_dir / "kafka" / "security").read_text().strip() or None
    except FileNotFoundError:
        return None


def replica_name(service: str, index: int) -> str:
    """``payments`` for the first replica, ``payments-2`` for the second: its name in the
    pid registry, the logs and ``choreo status``."""
    return service if index == 1 else f"{service}-{index}"


def is_consumer(process: str) -> bool:
    """Whether a registry name is a consumer service's process (a replica or the first)."""
    return split_replica(process)[0] in manifest.consumers()


def split_replica(name: str) -> tuple[str, int]:
    """``payments-2`` -> (``payments``, 2); any other name -> (name, 1)."""
    service, _, index = name.rpartition("-")
    if service in manifest.consumers() and index.isdigit() and int(index) >= 2:
        return service, int(index)
    return name, 1


LINK_DEPENDENCIES = ("postgres", "redis", "psp", "notifier")
"""What ``CHOREO_LINKS`` may route a participant's connections to through a fault proxy
(``manifest.linked()``; ``stack.links`` says why not the broker)."""


def default_service_ports() -> Mapping[str, int]:
    return MappingProxyType({p.name: p.port for p in manifest.MANIFEST})


@dataclass(frozen=True)
class StackSettings:
    state_dir: Path
    postgres_port: int = INFRASTRUCTURE_PORTS["postgres"]
    redis_port: int = INFRASTRUCTURE_PORTS["redis"]
    kafka_port: int = INFRASTRUCTURE_PORTS["kafka"]
    kafka_controller_port: int = INFRASTRUCTURE_PORTS["kafka_controller"]
    """The KRaft controller's listener of the embedded broker (one process, both roles)."""
    brokers: int = 1
    """``CHOREO_BROKERS`` (``choreo up --brokers 3``): Kafka nodes, each broker and
    controller; node N listens on ``kafka_port + 2(N-1)``, its controller on
    ``kafka_controller_port + 2(N-1)``."""
    connect_port: int = INFRASTRUCTURE_PORTS["connect"]
    service_ports: Mapping[str, int] = field(default_factory=default_service_ports)
    """Each service's /health port by its manifest name (a consumer's first replica's),
    moved by its entry's ``port_variable``: read it with :meth:`port_of`."""
    supervisor_metrics_port: int = INFRASTRUCTURE_PORTS["supervisor_metrics"]
    """The supervisor's /metrics: Connect's connector and task states, restarts."""
    console_port: int = INFRASTRUCTURE_PORTS["console"]
    """The web console (``choreo console``), on 127.0.0.1 only."""
    links_port: int = INFRASTRUCTURE_PORTS["links"]
    """The fault proxies' control endpoint (``stack.links``); the proxies follow it."""
    links: str = ""
    """``CHOREO_LINKS``: ``payments>postgres,...``, connections of a service routed through
    a fault proxy that a chaos run can blackhole, reset or slow (``stack.links``)."""
    cdc_poll_interval_ms: int = 10
    order_deadline_s: float = 30.0
    reservation_ttl_s: float = 120.0
    outbox_retention_s: float = 900.0
    """Outbox rows are kept this long and published again after a broker loss."""
    trace_keep_share: float = 0.1
    """The share of untroubled sagas whose trace the span store keeps; every trace with a
    problem is kept (``outbox.tail_sampling``)."""
    start_timeout_s: float = 90.0
    artifact_cache: Path | None = None
    """Where downloaded artifacts are kept; by default inside the state directory."""
    replicas: str = ""
    """``CHOREO_REPLICAS`` (``choreo up --replicas``): processes per consumer service,
    ``payments=2,inventory=2``; a service not named runs one."""
    embedded_kafka_security: str = "plaintext"
    """``CHOREO_EMBEDDED_KAFKA_SECURITY``: ``sasl_ssl`` serves the embedded broker's
    listeners with TLS (certificates of a throw-away CA in the state directory) and
    SASL/SCRAM, as a team's cluster would, and gives every client the stack starts, Connect
    included, the credentials (``stack.kafka_security``)."""
    api_key: str = field(default="", repr=False)
    """``CHOREO_API_KEY`` (or ``_FILE``): what ``choreo order`` presents to an orders intake
    that authenticates its callers (``outbox.access``; compose's ``cli`` job)."""
    operator_token: str = field(default="", repr=False)
    """``CHOREO_OPERATOR_TOKEN`` (or ``_FILE``): the credential the console's replay and
    discard ask for; unset, a POST from the console's own page is enough (loopback only)."""
    relay: str = "cdc"
    """``CHOREO_RELAY``: how outbox rows reach Kafka, ``cdc`` (Debezium) or ``polling``
    (``outbox.poller``), for every outbox database or per database (``orders=polling,...``)."""

    @classmethod
    def from_env(cls, env: Mapping[str, str]) -> StackSettings:
        """Read ``CHOREO_<FIELD>`` (upper case) for every field: ``CHOREO_STATE_DIR``,
        ``CHOREO_POSTGRES_PORT``, ...

        A value that is not a valid number or port fails here, naming the variable, rather
        than as a confusing bind error minutes later.
        """
        artifact_cache = config.text(env, "CHOREO_ARTIFACT_CACHE")
        state_dir = Path(config.text(env, "CHOREO_STATE_DIR",
                                     str(REPO_ROOT / ".choreo"))).resolve()
        settings = cls(
            state_dir=state_dir,
            artifact_cache=Path(artifact_cache).resolve() if artifact_cache else None,
            cdc_poll_interval_ms=config.integer(env, "CHOREO_CDC_POLL_INTERVAL_MS",
                                                cls.cdc_poll_interval_ms, ge=1),
            order_deadline_s=config.number(env, "CHOREO_ORDER_DEADLINE_S", cls.order_deadline_s,
                                           gt=0),
            reservation_ttl_s=config.number(env, "CHOREO_RESERVATION_TTL_S",
                                            cls.reservation_ttl_s, gt=0),
            outbox_retention_s=config.number(env, "CHOREO_OUTBOX_RETENTION_S",
                                             cls.outbox_retention_s, ge=0),
            trace_keep_share=config.number(env, "CHOREO_TRACE_KEEP_SHARE",
                                           cls.trace_keep_share, ge=0, le=1),
            start_timeout_s=config.number(env, "CHOREO_START_TIMEOUT_S", cls.start_timeout_s,
                                          gt=0),
            relay=config.text(env, "CHOREO_RELAY", cls.relay),
            api_key=config.text(env, "CHOREO_API_KEY").partition("\n")[0],
            operator_token=config.text(env, "CHOREO_OPERATOR_TOKEN"),
            embedded_kafka_security=config.text(
                env, "CHOREO_EMBEDDED_KAFKA_SECURITY",
                recorded_kafka_security(state_dir) or cls.embedded_kafka_security).lower(),
            links=config.text(env, "CHOREO_LINKS", cls.links),
            replicas=config.text(env, "CHOREO_REPLICAS", cls.replicas),
            brokers=config.integer(env, "CHOREO_BROKERS",
                                   recorded_brokers(state_dir) or cls.brokers,
                                   ge=1, le=MAX_BROKERS),
            service_ports=MappingProxyType({
                p.name: config.port(env, p.port_variable, p.port) for p in manifest.MANIFEST}),
            **{field.name: config.port(env, f"CHOREO_{field.name.upper()}",
                                       INFRASTRUCTURE_PORTS[field.name.removesuffix("_port")])
               for field in fields(cls) if field.name.endswith("_port")},
        )
        settings.validate()
        return settings

    @classmethod
    def port_variables(cls) -> dict[str, int]:
        """Every ``CHOREO_*_PORT`` variable and its default (a test offset shifts them)."""
        return {**{f"CHOREO_{name.upper()}_PORT": port
                   for name, port in INFRASTRUCTURE_PORTS.items()},
                **{p.port_variable: p.port for p in manifest.MANIFEST}}

    def port_of(self, service: str) -> int:
        """A service's /health port (a consumer's first replica's), by its manifest name."""
        return self.service_ports[service]

    def own_ports(self) -> dict[str, int]:
        """Every port given (not derived), by the variable that sets it."""
        return {**{f"CHOREO_{f.name.upper()}": getattr(self, f.name)
                   for f in fields(self) if f.name.endswith("_port")},
                **{manifest.named(name).port_variable: port
                   for name, port in self.service_ports.items()}}

    def validate(self) -> None:
        for variable, port in self.own_ports().items():
            config.check_port(variable, port)
        if self.reservation_ttl_s <= self.order_deadline_s:
            # A reservation must outlive the order's deadline, or an order could be
            # confirmed after its stock went back on the shelf.
            raise ConfigError(
                f"CHOREO_RESERVATION_TTL_S={self.reservation_ttl_s} must be greater than"
                f" CHOREO_ORDER_DEADLINE_S={self.order_deadline_s}"
            )
        if self.embedded_kafka_security not in KAFKA_SECURITY:
            raise ConfigError(f"CHOREO_EMBEDDED_KAFKA_SECURITY={self.embedded_kafka_security!r}"
                              f" is not one of {', '.join(KAFKA_SECURITY)}")
        if not 1 <= self.brokers <= MAX_BROKERS:
            raise ConfigError(f"CHOREO_BROKERS={self.brokers}: expected 1 to {MAX_BROKERS}")
        ports = [*self.own_ports().values(), *self.replica_ports()] + self.extra_broker_ports()
        ports += [self.links_port + n for n in range(1, len(self.link_pairs()) + 1)]
        if len(set(ports)) != len(ports):
            raise ConfigError(f"two components were given the same port: {sorted(ports)}")

        for database in manifest.databases(outbox=True):
            self.relay_mode(database)

    def link_pairs(self) -> list[tuple[str, str]]:
        """(service, dependency) of each link ``CHOREO_LINKS`` names, in order; the
        proxies' ports follow ``links_port`` in this order (``stack.links``)."""
        pairs: list[tuple[str, str]] = []
        for part in (p.strip() for p in self.links.split(",") if p.strip()):
            service, _, dependency = part.partition(">")
            if service not in manifest.linked() or dependency not in LINK_DEPENDENCIES:
                raise ConfigError(f"CHOREO_LINKS: {part!r} is not SERVICE>DEPENDENCY with a"
                                  f" service of {', '.join(manifest.linked())} and a dependency"
                                  f" of {', '.join(LINK_DEPENDENCIES)}")
            if (service, dependency) in pairs:
                raise ConfigError(f"CHOREO_LINKS: {part!r} is named twice")
            pairs.append((service, dependency))
        return pairs

    def relay_mode(self, database: str) -> str:
        """``cdc`` or ``polling`` for one outbox database."""
        modes = {}
        for part in self.relay.replace(" ", "").split(","):
            name, _, mode = part.rpartition("=")
            outbox_databases = manifest.databases(outbox=True)
            if mode not in RELAY_MODES or (name and name not in outbox_databases):
                raise ConfigError(f"CHOREO_RELAY={self.relay!r}: expected cdc, polling or"
                                  f" DATABASE=cdc|polling,... for {', '.join(outbox_databases)}")
            modes[name] = mode
        return modes.get(database, modes.get("", "cdc"))

    def replica_count(self, service: str) -> int:
        """How many processes of a consumer service ``CHOREO_REPLICAS`` asks for (1 if unnamed)."""
        if not self.replicas:
            return 1
        return config.parse_counts("CHOREO_REPLICAS", self.replicas, manifest.consumers(),
                                   ge=1, le=MAX_REPLICAS).get(service, 1)

    def replica_port(self, service: str, index: int) -> int:
        """The /health and /metrics port of a consumer's ``index``-th replica (from 1)."""
        return self.port_of(service) + REPLICA_PORT_STEP * (index - 1)

    def replica_ports(self) -> list[int]:
        """The derived ports of every replica past the first, each checked to be a port."""
        ports = []
        for service in manifest.consumers():
            variable = manifest.named(service).port_variable
            for index in range(2, self.replica_count(service) + 1):
                ports.append(config.check_port(
                    f"{variable} + {REPLICA_PORT_STEP * (index - 1)} (the port of"
                    f" {replica_name(service, index)})", self.replica_port(service, index)))
        return ports

    def databases_relayed_by(self, mode: str) -> tuple[str, ...]:
        return tuple(db for db in manifest.databases(outbox=True) if self.relay_mode(db) == mode)

    @property
    def kafka_bootstrap(self) -> str:
        """Every node's listener, so a client can start while any one of them is down."""
        return ",".join(f"127.0.0.1:{self.broker_port(node)}" for node in self.broker_nodes())

    @property
    def secured(self) -> bool:
        return self.embedded_kafka_security == "sasl_ssl"

    @property
    def kafka(self) -> KafkaConnection:
        """How the stack's own clients reach the embedded broker."""
        if not self.secured:
            return KafkaConnection(self.kafka_bootstrap)
        return KafkaConnection(self.kafka_bootstrap, "SASL_SSL", SCRAM_MECHANISM, SCRAM_USER,
                               self.scram_password_file.read_text().strip(),
                               ssl_ca_location=str(self.kafka_ca_file))

    def kafka_env(self) -> dict[str, str]:
        """What a child process needs to reach the embedded broker; the password as a
        file (``CHOREO_KAFKA_SASL_PASSWORD_FILE``), never in the environment."""
        env = {"CHOREO_KAFKA_BOOTSTRAP": self.kafka_bootstrap}
        if self.secured:
            env |= {"CHOREO_KAFKA_SECURITY_PROTOCOL": "SASL_SSL",
                    "CHOREO_KAFKA_SASL_MECHANISM": SCRAM_MECHANISM,
                    "CHOREO_KAFKA_SASL_USERNAME": SCRAM_USER,
                    "CHOREO_KAFKA_SASL_PASSWORD_FILE": str(self.scram_password_file),
                    "CHOREO_KAFKA_SSL_CA_LOCATION": str(self.kafka_ca_file)}
        return env

    def broker_nodes(self) -> range:
        return range(1, self.brokers + 1)

    def broker_port(self, node: int) -> int:
        return self.kafka_port + BROKER_PORT_STEP * (node - 1)

    def controller_port(self, node: int) -> int:
        return self.kafka_controller_port + BROKER_PORT_STEP * (node - 1)

    def extra_broker_ports(self) -> list[int]:
        """The listener and controller ports of nodes 2 and up, each checked to be a port."""
        return [config.check_port(f"{variable} + {BROKER_PORT_STEP * (node - 1)} (node {node})",
                                  port(node))
                for node in self.broker_nodes()[1:]
                for variable, port in (("CHOREO_KAFKA_PORT", self.broker_port),
                                       ("CHOREO_KAFKA_CONTROLLER_PORT", self.controller_port))]

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
            **self.kafka_env(),
            "CHOREO_REDIS_URL": self.redis_url,
            **{manifest.named(name).port_variable: str(port)
               for name, port in self.service_ports.items()},
            **{p.url_variable: f"http://127.0.0.1:{self.port_of(p.name)}"
               for p in manifest.MANIFEST if p.url_variable},
            "CHOREO_ORDER_DEADLINE_S": str(self.order_deadline_s),
            "CHOREO_RESERVATION_TTL_S": str(self.reservation_ttl_s),
            "CHOREO_OUTBOX_RETENTION_S": str(self.outbox_retention_s),
            "CHOREO_TELEMETRY_URL": self.database_dsn(TELEMETRY_DATABASE),
            "CHOREO_TRACE_KEEP_SHARE": str(self.trace_keep_share),
            "CHOREO_TRACE_STARTED_BY": ",".join(SAGA_STARTED_BY),
            "CHOREO_TRACE_SETTLED_BY": ",".join(SAGA_SETTLED_BY),
            "CHOREO_TRACE_KEEP_EVENTS": ",".join(SAGA_TROUBLE),
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
    def kafka_dir(self) -> Path:
        """The broker's configuration and, under ``data``, its log: kept across ``down``."""
        return self.state_dir / "kafka"

    @property
    def kafka_tls_dir(self) -> Path:
        """The throw-away CA and the broker's certificate of a secured embedded broker."""
        return self.kafka_dir / "tls"

    @property
    def kafka_ca_file(self) -> Path:
        return self.kafka_tls_dir / "ca.pem"

    @property
    def scram_password_file(self) -> Path:
        """Drawn when the log is formatted, with the SCRAM user it bootstraps."""
        return self.kafka_dir / "scram-password"

    @property
    def connect_dir(self) -> Path:
        return self.state_dir / "connect"
