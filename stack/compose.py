"""compose.yaml's choreo part, rendered from the manifest, so that the manifest stays the
only list of the services (docs/outbox.md, "Writing a new service").

compose.yaml is written by hand, for people to read, except two regions between marker
lines: the services' shared environment (where the psp and the notifier are) and the
services themselves with the two jobs that name them (the topics to provision, the
connectors to deploy once every outbox service is healthy). PostgreSQL's databases
(``infra/compose/init-databases.sql``) and Prometheus' scrape targets
(``infra/compose/prometheus.yml``) are rendered whole. ``python -m choreo.stack.compose``
writes all of it into a checkout; ``tests/compose/test_compose_file.py`` fails when a
committed file differs from its render.

Only text is produced here (no YAML library: PyYAML is a test dependency, and a dumper
would drop the comments and anchors that keep the file readable).
"""

from __future__ import annotations

import re
import sys
from collections.abc import Callable, Mapping
from pathlib import Path

from choreo.stack import manifest
from choreo.stack.launcher import service_topics
from choreo.stack.manifest import Participant
from choreo.stack.settings import INFRASTRUCTURE_PORTS

CONSUMER_REPLICAS = 2
"""Processes of each consumer service: they share partitions through their leases."""

KAFKA = ",".join(f"kafka{node}:9092" for node in (1, 2, 3))
POSTGRES = "postgres:5432"
TOPIC_SETTINGS = {"PARTITIONS": 3, "REPLICATION_FACTOR": 3, "MIN_INSYNC_REPLICAS": 2}
"""What the topics job gives every topic it creates; the brokers' defaults are the same,
so a topic a client creates on its own gets them too."""

HEALTH_PROBE = "import urllib.request as u; u.urlopen('http://127.0.0.1:{port}/health', timeout=2)"
"""The slim Python image has no curl; a 503 (a consumer still waiting for its database)
raises, so the container is healthy only once ``/health`` answers 200."""

MARKER = re.compile(r"^ *# >>> generated: (?P<name>[\w-]+)[^\n]*\n"
                    r".*?^ *# <<< generated: (?P=name)\n", re.MULTILINE | re.DOTALL)


def health_port_variable(participant: Participant) -> str:
    """A consumer serves /health on ``CHOREO_METRICS_PORT``; an HTTP service on its own
    variable (``CHOREO_ORDERS_PORT``), as the embedded stack gives them."""
    return "CHOREO_METRICS_PORT" if participant.consumer else participant.port_variable


def published(participant: Participant) -> bool:
    """The intakes clients call (orders-api, users, wallet-api), on the host's loopback;
    the consumers serve only probes and metrics, and the psp and notifier stand in for
    outside providers that only the services call."""
    return participant.participant and not participant.consumer


def flow(items: list[str]) -> str:
    return "[" + ", ".join(items) + "]"


def region(name: str, lines: list[str], indent: str) -> str:
    body = "".join(f"{indent}{line}\n" if line else "\n" for line in lines)
    return (f"{indent}# >>> generated: {name} (from stack/manifest.py by `python -m"
            f" choreo.stack.compose`; edit there)\n{body}{indent}# <<< generated: {name}\n")


def environment_region() -> str:
    """Where each service others call over HTTP is (``CHOREO_PSP_URL``)."""
    return region("environment", [f"{p.url_variable}: http://{p.name}:{p.port}"
                                   for p in manifest.MANIFEST if p.url_variable], "  ")


def service_lines(participant: Participant) -> list[str]:
    p = participant
    lines = [
        f"{p.name}:",
        "  <<: *choreo-service",
        f"  command: {flow(['python', '-m', p.module, *p.args])}",
        "  environment:",
        "    <<: *choreo-env",
        f"    OTEL_SERVICE_NAME: {p.name}",
        f"    CHOREO_DATABASE_URL: postgresql://postgres@{POSTGRES}/{p.database}",
        f'    {health_port_variable(p)}: "{p.port}"',
        "  healthcheck:",
        "    <<: *probe",
        f'    test: [CMD, python, -c, "{HEALTH_PROBE.format(port=p.port)}"]',
    ]
    if not p.consumer:
        # An HTTP server reachable on compose's network authenticates its callers
        # (outbox.access); a stand-in that only the services call is open on purpose.
        lines[7:7] = (["    CHOREO_API_KEYS_FILE: /run/secrets/api_keys"] if published(p)
                      else ['    CHOREO_ALLOW_ANONYMOUS: "true"'])
        if published(p):
            lines.append("  secrets: [pgpass, redis_password, api_keys]")
    if p.consumer:
        lines.append(f"  deploy: {{replicas: {CONSUMER_REPLICAS}}}")
    if published(p):
        lines.append(f'  ports: ["127.0.0.1:{p.port}:{p.port}"]')
    return lines + [""]


def topics_job_lines() -> list[str]:
    return [
        "# One-shot, before any service starts: every topic with the cluster's settings, so",
        "# nothing depends on a client's defaults.",
        "topics:",
        "  image: *kafka-image",
        '  restart: "no"',
        "  depends_on:",
        *[f"    kafka{node}: {{condition: service_healthy}}" for node in (1, 2, 3)],
        "  environment:",
        f"    BOOTSTRAP: {KAFKA}",
        *[f'    {name}: "{value}"' for name, value in TOPIC_SETTINGS.items()],
        f"    TOPICS: {' '.join(service_topics())}",
        "  entrypoint: [/bin/sh, -c]",
        "  command:",
        "    - >-",
        '      for topic in $$TOPICS; do /opt/kafka/bin/kafka-topics.sh --bootstrap-server',
        '      "$$BOOTSTRAP" --create --if-not-exists --topic "$$topic" --partitions',
        '      "$$PARTITIONS" --replication-factor "$$REPLICATION_FACTOR" --config',
        '      "min.insync.replicas=$$MIN_INSYNC_REPLICAS" || exit 1; done',
        "",
    ]


def connectors_job_lines() -> list[str]:
    return [
        "# One-shot: the outbox connectors, once every outbox service has created its outbox",
        "# table and publication (they do so at start-up). Connect's directory config provider",
        "# reads the database password from the workers' secret file: the connector config",
        "# holds only a reference to it.",
        "connectors:",
        "  <<: *choreo-job",
        "  depends_on:",
        *[f"    {name}: {{condition: service_healthy}}" for name in
          ("connect-1", "connect-2", *(p.name for p in manifest.MANIFEST if p.outbox))],
        "  environment:",
        "    PGPASSFILE: /run/secrets/pgpass",
        '    CHOREO_CONNECT_PASSWORD_REFERENCE: "$${dir:/run/secrets:postgres_password}"',
        '  command: [choreo, connectors, deploy, --connect-url, "http://connect-1:8083",',
        '            --postgres-host, postgres, --postgres-port, "5432"]',
    ]


def services_region() -> str:
    lines = [line for p in manifest.MANIFEST for line in service_lines(p)]
    return region("services", lines + topics_job_lines() + connectors_job_lines(), "  ")


def compose_file(current: str) -> str:
    """``current`` with its generated regions rendered anew."""
    regions = {"environment": environment_region(), "services": services_region()}
    found = [match["name"] for match in MARKER.finditer(current)]
    if sorted(found) != sorted(regions):
        raise ValueError(f"compose.yaml has the generated regions {found}, expected"
                         f" {sorted(regions)}")
    return MARKER.sub(lambda match: regions[match["name"]], current)


def init_databases(current: str = "") -> str:
    return "".join(
        ["-- Generated from stack/manifest.py by `python -m choreo.stack.compose`: one database\n",
         "-- per service, as in the embedded stack. Each service applies its own tables (and\n",
         "-- the outbox publication) at start-up.\n"]
        + [f"CREATE DATABASE {database};\n" for database in manifest.databases()])


def prometheus_config(current: str = "") -> str:
    """Every service by its compose name: each replica is one address of that name."""
    jobs = [(p.name, p.port) for p in manifest.MANIFEST] + [
        ("connect-metrics", INFRASTRUCTURE_PORTS["supervisor_metrics"])]
    lines = [
        "# Generated from stack/manifest.py by `python -m choreo.stack.compose`: edit there.",
        "# compose.yaml's Prometheus: every service found through compose's DNS (a name with",
        "# two replicas answers with both addresses), Connect's connector and task states from",
        "# connect-metrics, and the shipped alert rules (infra/monitoring/alerts.yml).",
        "global:",
        "  scrape_interval: 5s",
        "  evaluation_interval: 15s",
        "rule_files:",
        "  - alerts.yml",
        "scrape_configs:",
    ]
    for name, port in jobs:
        lines += [f"  - job_name: {name}",
                  f"    dns_sd_configs: [{{names: [{name}], type: A, port: {port},"
                  " refresh_interval: 15s}]",
                  f"    relabel_configs: [{{target_label: process, replacement: {name}}}]"]
    return "\n".join(lines) + "\n"


RENDERED: Mapping[str, Callable[[str], str]] = {
    "compose.yaml": compose_file,
    "infra/compose/init-databases.sql": init_databases,
    "infra/compose/prometheus.yml": prometheus_config,
}
"""Each file a render writes, relative to the checkout, and how from its current text."""


def main(root: Path) -> None:
    for relative, render in RENDERED.items():
        path = root / relative
        current = path.read_text() if path.exists() else ""
        rendered = render(current)
        if rendered != current:
            path.write_text(rendered)
            print(f"wrote {relative}")


if __name__ == "__main__":
    main(Path(sys.argv[1]) if len(sys.argv) > 1 else Path.cwd())
