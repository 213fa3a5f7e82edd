"""compose.yaml's choreo processes, run from the wheel with the command and environment
compose gives each container, to a CONFIRMED saga (issue 24, item 2).

The wheel is built and installed in a fresh virtual environment outside the checkout, as
the image installs it; every one-shot job and every service (each consumer twice) is
started from it with compose's command and environment. No container engine runs here, so
the servers are the embedded test stack's real PostgreSQL, Kafka and Connect + Debezium,
and a redis-server of the test's own asking for compose's password. What differs from a
container, and only that (``tests/compose/loopback.py``):

- host names and ports; a second replica's port (containers have a network each);
- the listen address, 0.0.0.0 -> 127.0.0.1;
- the stack's PostgreSQL trusts loopback: the password in pgpass is given but unused;
- one Kafka node: the topics job's replication factor and min.insync.replicas are 1;
- the topics job's kafka-topics.sh is Kafka's TopicCommand from the stack's own Kafka 4.3.0
  jars, the class the image's script runs;
- the stack's Connect is one standalone worker without the directory config provider, so
  the password reference the connectors job deploys is not resolved (trust, again).
"""

from __future__ import annotations

import http.server
import os
import shlex
import shutil
import signal
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import psycopg
import pytest
import redis
import requests

from choreo.services.inventory import catalog
from choreo.stack import compose, manifest
from choreo.stack.broker import kafka_tool_command
from choreo.stack.connectors import deploy_outbox_connectors
from choreo.stack.processes import ProcessRegistry
from choreo.stack.settings import StackSettings, replica_name
from tests.compose import composefile
from tests.compose.loopback import Loopback, Ports
from tests.support import eventually, holds
from tests.wheel import REPO, build_wheel

pytestmark = [pytest.mark.stack, pytest.mark.slow, pytest.mark.timeout(1500)]

SECRETS = "/run/secrets/"
KAFKA_BIN = "/opt/kafka/bin/"
CLEARED = ("CHOREO_", "OTEL_", "PG", "PYTHONPATH", "VIRTUAL_ENV")
"""This test's own environment that must not reach the processes (ProcessRegistry passes
its caller's on): only what compose gives them does."""


class Collector(http.server.ThreadingHTTPServer):
    """Stands in for the OpenTelemetry collector: accepts OTLP/HTTP posts, keeps paths."""

    def __init__(self, port: int) -> None:
        self.posted: list[str] = []
        super().__init__(("127.0.0.1", port), CollectorHandler)


class CollectorHandler(http.server.BaseHTTPRequestHandler):
    server: Collector

    def do_POST(self) -> None:  # noqa: N802 - the name http.server calls
        self.rfile.read(int(self.headers.get("Content-Length", 0)))
        self.server.posted.append(self.path)
        self.send_response(200)
        self.send_header("Content-Type", "application/x-protobuf")
        self.send_header("Content-Length", "0")
        self.end_headers()

    def log_message(self, format: str, *args: Any) -> None:
        """Quiet: the posts are counted, not logged."""


@dataclass
class ComposeRun:
    settings: StackSettings
    services: dict[str, dict[str, Any]]
    loopback: Loopback
    venv_bin: Path
    workdir: Path
    registry: ProcessRegistry
    collector: Collector
    redis: redis.Redis | None = None
    """The Redis with compose's password, once started."""
    health_ports: dict[str, int] = field(default_factory=dict)
    """Each started process (``payments-2`` included) and where its /health answers."""
    service_of: dict[str, str] = field(default_factory=dict)
    """Each started process's compose service."""

    def env(self, service: str, **overrides: str) -> dict[str, str]:
        cleared = {name: "" for name in os.environ if name.startswith(CLEARED)}
        return {**cleared, "PATH": f"{self.venv_bin}:/usr/bin:/bin", "LANG": "C.UTF-8",
                "HOME": os.environ.get("HOME", "/root"),
                **self.loopback.env(composefile.environment(self.services[service])),
                **overrides}

    def argv(self, service: str, *extra: str) -> list[str]:
        """Compose's command; ``python`` and ``choreo`` are the fresh environment's."""
        argv = self.loopback.argv([*composefile.argv(self.services[service]), *extra])
        if argv[0] in ("python", "choreo"):
            argv[0] = str(self.venv_bin / argv[0])
        return argv

    def run_job(self, service: str, *extra: str, timeout_s: float = 300, **overrides: str
                ) -> subprocess.CompletedProcess[str]:
        """A one-shot job to its end; killed by its own process group's id if it hangs."""
        process = subprocess.Popen(self.argv(service, *extra), env=self.env(service, **overrides),
                                   cwd=self.workdir, stdout=subprocess.PIPE,
                                   stderr=subprocess.STDOUT, text=True, start_new_session=True)
        try:
            output, _ = process.communicate(timeout=timeout_s)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            output, _ = process.communicate()
            pytest.fail(f"{service} did not finish in {timeout_s:.0f} s:\n{output}")
        return subprocess.CompletedProcess(process.args, process.returncode, output)

    def start(self, service: str, replica: int, health_port: int) -> None:
        name = replica_name(service, replica)
        overrides = {}
        participant = next((p for p in manifest.MANIFEST if p.name == service), None)
        if participant is not None:  # a replica's own port; the first's is compose's, moved
            overrides[compose.health_port_variable(participant)] = str(health_port)
        self.registry.start(name, self.argv(service), env=self.env(service, **overrides),
                            cwd=self.workdir)
        self.health_ports[name] = health_port
        self.service_of[name] = service

    def wait_healthy(self, timeout_s: float = 120) -> None:
        deadline = time.monotonic() + timeout_s
        waiting = dict(self.health_ports)
        while waiting:
            for name, port in list(waiting.items()):
                assert self.registry.running(name), self.log_tail(name)
                try:
                    if requests.get(f"http://127.0.0.1:{port}/health", timeout=2).ok:
                        del waiting[name]
                except requests.RequestException:
                    pass
            assert time.monotonic() < deadline, f"not healthy: {sorted(waiting)}" + "".join(
                self.log_tail(name) for name in waiting)
            time.sleep(0.25)

    def log_tail(self, name: str) -> str:
        text = self.registry.log_file(name).read_text(errors="replace")
        return f"\n--- {name}:\n" + "\n".join(text.splitlines()[-30:])


def installed_wheel(root: Path) -> Path:
    """The wheel in a fresh virtual environment; its bin folder."""
    wheel = build_wheel(root / "dist")
    venv = root / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True, timeout=120)
    subprocess.run([str(venv / "bin" / "python"), "-m", "pip", "install", "-q",
                    "--disable-pip-version-check", str(wheel)], check=True, timeout=900,
                   cwd=root)
    return venv / "bin"


def mounted_secrets(root: Path, loopback: Loopback) -> Path:
    """make-secrets.sh's files as a container sees them, with compose's host names in
    them (pgpass, the Redis URL) pointed here; modes kept (libpq wants pgpass 0600)."""
    made, mounted = root / "secrets", root / "run-secrets"
    subprocess.run([str(REPO / "infra" / "compose" / "make-secrets.sh"), str(made)],
                   check=True, capture_output=True, timeout=30)
    mounted.mkdir()
    for path in made.iterdir():
        (mounted / path.name).write_text(loopback.value(path.read_text()))
        shutil.copymode(path, mounted / path.name)
    return mounted


def kafka_topics_script(settings: StackSettings, folder: Path) -> Path:
    """``kafka-topics.sh`` as the image has it: Kafka's TopicCommand, here from the stack's
    jars (the same 4.3.0 release)."""
    folder.mkdir()
    java = kafka_tool_command(settings, "topics", ["--bootstrap-server", "unused"])[:-2]
    script = folder / "kafka-topics.sh"
    script.write_text(f"#!/bin/sh\nexec {shlex.join(java)} \"$@\"\n")
    script.chmod(0o755)
    return folder


def started_redis(registry: ProcessRegistry, root: Path, port: int, password: str
                  ) -> redis.Redis:
    """compose's Redis: a password from the secret, no persistence."""
    config = root / "redis.conf"
    config.write_text(f"port {port}\nbind 127.0.0.1\nrequirepass {password}\nsave \"\"\n"
                      f"appendonly no\ndir {root}\n")
    config.chmod(0o600)
    registry.start("redis", [shutil.which("redis-server") or "redis-server", str(config)])
    client = redis.Redis(host="127.0.0.1", port=port, password=password)
    deadline = time.monotonic() + 20
    while True:
        try:
            client.ping()
            return client
        except redis.ConnectionError:
            assert time.monotonic() < deadline, "redis-server did not answer in 20 s"
            time.sleep(0.1)


def loopback_for(settings: StackSettings, ports: Ports, redis_port: int,
                 collector_port: int) -> tuple[Loopback, dict[str, int]]:
    """The mapping, and each manifest service's (first replica's) port here."""
    service_ports = {p.name: ports.take() for p in manifest.MANIFEST}
    kafka = {f"kafka{node}:9092": f"127.0.0.1:{settings.broker_port(min(node, settings.brokers))}"
             for node in (1, 2, 3)}
    loopback = Loopback(
        addresses={**kafka, "postgres:5432": f"127.0.0.1:{settings.postgres_port}",
                   "redis:6379": f"127.0.0.1:{redis_port}",
                   "connect-1:8083": f"127.0.0.1:{settings.connect_port}",
                   "connect-2:8083": f"127.0.0.1:{settings.connect_port}",
                   "otel-collector:4318": f"127.0.0.1:{collector_port}",
                   **{f"{p.name}:{p.port}": f"127.0.0.1:{service_ports[p.name]}"
                      for p in manifest.MANIFEST}},
        tokens={"postgres": "127.0.0.1", "5432": str(settings.postgres_port),
                "0.0.0.0": "127.0.0.1",
                **{str(p.port): str(service_ports[p.name]) for p in manifest.MANIFEST}})
    return loopback, service_ports


@pytest.fixture(scope="module")
def compose_run(running_stack: StackSettings, tmp_path_factory: pytest.TempPathFactory
                ) -> Iterator[ComposeRun]:
    settings = running_stack
    root = tmp_path_factory.mktemp("compose")
    venv_bin = installed_wheel(root)
    ports = Ports(settings.kafka_port + 500)
    redis_port, collector_port, metrics_port = ports.take(), ports.take(), ports.take()
    loopback, service_ports = loopback_for(settings, ports, redis_port, collector_port)
    loopback.tokens["18085"] = str(metrics_port)
    loopback.prefixes[KAFKA_BIN] = f"{kafka_topics_script(settings, root / 'kafka-bin')}/"
    loopback.prefixes[SECRETS] = f"{mounted_secrets(root, loopback)}/"
    registry = ProcessRegistry(root / "pids", root / "logs")
    collector = Collector(collector_port)
    threading.Thread(target=collector.serve_forever, daemon=True).start()
    workdir = root / "work"  # nothing of the checkout where the processes run
    workdir.mkdir()
    run = ComposeRun(settings, composefile.services(), loopback, venv_bin, workdir, registry,
                     collector)
    try:
        run.redis = started_redis(registry, root, redis_port,
                                  (root / "run-secrets" / "redis_password").read_text())
        yield start_in_compose_order(run, ports, service_ports, metrics_port)
    finally:
        for name in registry.names():
            registry.stop(name)
        collector.shutdown()
        collector.server_close()
        if run.redis is not None:
            run.redis.close()
        # The connectors job deployed compose's connector configs on the shared stack.
        deploy_outbox_connectors(settings, settings.databases_relayed_by("cdc"),
                                 report=lambda line: None)


def start_in_compose_order(run: ComposeRun, ports: Ports, service_ports: dict[str, int],
                           metrics_port: int) -> ComposeRun:
    """As compose's depends_on has it: slots and topics, the services, then the connectors
    (once every outbox service is healthy) and the Connect metrics."""
    one_node = {"REPLICATION_FACTOR": "1", "MIN_INSYNC_REPLICAS": "1"}
    for job, overrides in (("slots", {}), ("topics", one_node if run.settings.brokers < 3
                                            else {})):
        done = run.run_job(job, **overrides)
        assert done.returncode == 0, f"{job}:\n{done.stdout}"
    for p in manifest.MANIFEST:
        for replica in range(1, composefile.replicas(run.services[p.name]) + 1):
            # On one machine a second replica cannot share the first's port.
            run.start(p.name, replica, service_ports[p.name] if replica == 1 else ports.take())
    run.wait_healthy()
    done = run.run_job("connectors")
    assert done.returncode == 0, f"connectors:\n{done.stdout}"
    run.start("connect-metrics", 1, metrics_port)
    return run


def test_an_order_placed_with_the_cli_job_is_confirmed(compose_run: ComposeRun) -> None:
    """``docker compose run --rm cli order ...``, as compose.yaml's header says, on a SKU
    of the test's own."""
    sku = f"compose-{uuid.uuid4().hex[:8]}"
    with psycopg.connect(compose_run.settings.database_dsn("inventory")) as conn:
        catalog.stock_up(conn, [catalog.CatalogItem(sku, sku, 1250, 10)])
    done = compose_run.run_job("cli", "order", "--sku", sku, "--quantity", "2", timeout_s=120)
    assert done.returncode == 0 and "=> CONFIRMED" in done.stdout, done.stdout
    assert compose_run.redis is not None and compose_run.redis.dbsize() > 0  # authenticated


def test_every_consumer_replica_owns_a_share_of_the_partitions(
        compose_run: ComposeRun) -> None:
    consumers = {name: port for name, port in compose_run.health_ports.items()
                 if compose_run.service_of[name] in manifest.consumers()}

    def all_assigned() -> dict[str, int]:
        owned = {name: requests.get(f"http://127.0.0.1:{port}/health", timeout=5
                                    ).json()["partitions"] for name, port in consumers.items()}
        assert len(owned) == compose.CONSUMER_REPLICAS * len(manifest.consumers()), owned
        assert all(count > 0 for count in owned.values()), owned
        return owned

    eventually(all_assigned, timeout_s=60)


def test_connect_metrics_show_every_outbox_connector_running(compose_run: ComposeRun) -> None:
    port = compose_run.health_ports["connect-metrics"]

    def running() -> None:
        text = requests.get(f"http://127.0.0.1:{port}/metrics", timeout=5).text
        for database in manifest.databases(outbox=True):
            assert f'choreo_connector_running{{connector="{database}-outbox"}} 1.0' in text

    eventually(running, timeout_s=60)


def test_spans_reach_the_collector_compose_names(compose_run: ComposeRun) -> None:
    """OTEL_EXPORTER_OTLP_ENDPOINT from compose: the services post their spans there."""
    eventually(lambda: holds("/v1/traces" in compose_run.collector.posted,
                             compose_run.collector.posted), timeout_s=30)
