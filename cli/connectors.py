"""``choreo connectors render|slots|deploy``: the outbox connectors for any Connect cluster.

The embedded stack deploys them itself; this is for compose mode and for users with a
Kafka Connect cluster of their own. Hosts and credentials come from flags or the
environment, never from the template.

``deploy`` creates each database's replication slot first, as the embedded stack's
migration does: a slot that Debezium creates itself starts when the connector first
runs, so whatever the services committed before that would never be published
(docs/stack.md). Run ``slots`` (or ``deploy``) before the services first write, or
pass ``--no-slots`` when the slots are managed elsewhere.

The database password never has to reach Connect's config topic in clear:
``CHOREO_CONNECT_PASSWORD_REFERENCE=${file:/opt/secrets/postgres.properties:password}``
puts a reference to one of Connect's config providers (KIP-297; ``config.providers`` on the
worker) into the connector instead, and only the slot creation, which choreo does itself,
reads the password (``CHOREO_POSTGRES_PASSWORD`` or ``..._FILE``). ``render`` never prints
a password.
"""

from __future__ import annotations

import argparse
import json
import os
import time
from typing import Any

import psycopg
import requests
from psycopg.conninfo import make_conninfo

from choreo.outbox import config
from choreo.outbox.errors import ConfigError
from choreo.outbox.kafka_connection import KafkaConnection
from choreo.outbox.wire import OUTBOX_TEMPLATE, render
from choreo.stack import group_lag, manifest, metrics
from choreo.stack.connectors import ConnectClient, deploy
from choreo.stack.errors import StackError
from choreo.stack.settings import StackSettings
from choreo.stack.slots import ensure_replication_slot

MASK = "********"


def password() -> str:
    return config.text(os.environ, "CHOREO_POSTGRES_PASSWORD")


def password_reference() -> str:
    """What the connector says in place of the password: a config provider's reference."""
    reference = config.text(os.environ, "CHOREO_CONNECT_PASSWORD_REFERENCE")
    if reference and not (reference.startswith("${") and reference.endswith("}")):
        # Not echoed: a password put here by mistake must not reach a log.
        raise ConfigError("CHOREO_CONNECT_PASSWORD_REFERENCE is not a config provider"
                          " reference such as ${file:/path/secrets.properties:key}")
    return reference


def values_from(args: argparse.Namespace, database: str) -> dict[str, str]:
    return {
        "database": database,
        "postgres_host": args.postgres_host,
        "postgres_port": str(args.postgres_port),
        "postgres_user": args.postgres_user,
        "postgres_password": password_reference() or password(),
        "poll_interval_ms": str(args.poll_interval_ms),
    }


def printable(connector: dict[str, Any]) -> dict[str, Any]:
    """A rendered connector fit to print: a password in clear is masked, a reference kept."""
    secret = connector["config"]["database.password"]
    if secret and secret != password_reference():
        connector = {**connector, "config": {**connector["config"], "database.password": MASK}}
    return connector


def cmd_render(args: argparse.Namespace, settings: StackSettings) -> int:
    for database in args.databases:
        rendered = render(OUTBOX_TEMPLATE, values_from(args, database))
        print(json.dumps(printable(rendered), indent=2))
    return 0


def create_slots(rendered: list[dict[str, Any]], wait_s: float) -> None:
    """Each connector's slot, with the name and plugin its config gives, unless it exists.

    A database not reachable yet (a server still initialising, as in compose, where this
    runs once before every service) is waited for up to ``wait_s``."""
    deadline = time.monotonic() + wait_s
    for connector in rendered:
        while True:
            try:
                create_slot(connector["config"])
                break
            except psycopg.OperationalError as error:
                if time.monotonic() >= deadline:
                    raise StackError(f"cannot create the replication slot of"
                                     f" {connector['name']}: {error}") from error
                time.sleep(1.0)


def create_slot(config: dict[str, str]) -> None:
    dsn = make_conninfo(host=config["database.hostname"], port=config["database.port"],
                        user=config["database.user"], dbname=config["database.dbname"],
                        password=password() or None, connect_timeout=5)
    slot = config["slot.name"]
    created = ensure_replication_slot(dsn, config["database.dbname"], slot,
                                      config["plugin.name"])
    print(f"slot {slot} {'created' if created else 'already there'}"
          f" in {config['database.dbname']}")


def cmd_slots(args: argparse.Namespace, settings: StackSettings) -> int:
    create_slots([render(OUTBOX_TEMPLATE, values_from(args, db)) for db in args.databases],
                 args.wait)
    return 0


def cmd_deploy(args: argparse.Namespace, settings: StackSettings) -> int:
    rendered = [render(OUTBOX_TEMPLATE, values_from(args, db)) for db in args.databases]
    if args.slots:
        create_slots(rendered, args.wait)
    if not deploy(ConnectClient(args.connect_url), rendered, print, timeout_s=120):
        print(f"every connector already RUNNING with this config on {args.connect_url}")
    return 0


def connect_statuses(urls: list[str]) -> dict[str, dict[str, Any]] | None:
    """From the first worker that answers (any worker of a cluster knows every connector);
    None when none does."""
    for url in urls:
        try:
            return ConnectClient(url).statuses()
        except requests.RequestException:
            continue
    return None


def cmd_metrics(args: argparse.Namespace, settings: StackSettings) -> int:
    """What the embedded supervisor publishes about Connect and the consumer groups, for a
    cluster it does not run (compose): without it the alert on a connector that is not
    RUNNING has no series, and the dashboard no lag from the broker's view."""
    metrics.serve(args.port, config.text(os.environ, "CHOREO_BIND_HOST", "127.0.0.1"))
    kafka = KafkaConnection.from_env(os.environ)  # the cluster's, as a service's
    group_lag.watch(kafka)
    print(f"Connect's connector states on :{args.port}/metrics, from"
          f" {' or '.join(args.connect_url)}, and the consumer groups' lag from"
          f" {kafka.bootstrap}", flush=True)
    while True:
        metrics.publish_connector_states(connect_statuses(args.connect_url))
        time.sleep(args.interval)


def register(commands: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    connectors = commands.add_parser("connectors", help="render or deploy the outbox connectors")
    sub = connectors.add_subparsers(dest="connectors_command", required=True)
    for name, handler, text in (
            ("render", cmd_render, "print the rendered Debezium JSON"),
            ("slots", cmd_slots, "create the replication slots (before the services write)"),
            ("deploy", cmd_deploy, "create the slots, validate, PUT, wait for RUNNING")):
        parser = sub.add_parser(name, help=text)
        parser.add_argument("--connect-url", default="http://127.0.0.1:8083",
                            help="Connect's REST API")
        parser.add_argument("--postgres-host", default="127.0.0.1",
                            help="PostgreSQL as Connect's workers reach it")
        parser.add_argument("--postgres-port", type=int, default=5432, help="its port")
        parser.add_argument("--postgres-user", default="postgres",
                            help="the password comes from CHOREO_POSTGRES_PASSWORD(_FILE);"
                            " the connector may say CHOREO_CONNECT_PASSWORD_REFERENCE instead")
        parser.add_argument("--poll-interval-ms", type=int, default=10,
                            help="Debezium's poll.interval.ms: latency against idle CPU")
        parser.add_argument("--databases", nargs="+", default=list(manifest.databases(outbox=True)),
                            help="the outbox databases (default: every one of the manifest)")
        parser.set_defaults(handler=handler)
        if name != "render":
            parser.add_argument("--wait", type=float, default=60.0, metavar="SECONDS",
                                help="how long to wait for PostgreSQL to accept connections")
        if name == "deploy":
            parser.add_argument("--no-slots", dest="slots", action="store_false",
                                help="do not create the replication slots first (they are"
                                " managed elsewhere)")
    watch = sub.add_parser("metrics", help="serve Connect's connector and task states on"
                           " /metrics for Prometheus, until stopped")
    watch.add_argument("--connect-url", nargs="+", default=["http://127.0.0.1:8083"],
                       help="one or more workers of the cluster; the first that answers")
    watch.add_argument("--port", type=int, default=18085, help="where /metrics listens")
    watch.add_argument("--interval", type=float, default=5.0, metavar="SECONDS",
                       help="how often Connect's REST API is read")
    watch.set_defaults(handler=cmd_metrics)
