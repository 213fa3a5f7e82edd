"""``choreo connectors render|deploy``: the outbox connectors for any Connect cluster.

The embedded stack deploys them itself; this is for compose mode and for users with a
Kafka Connect cluster of their own. Hosts and credentials come from flags or the
environment, never from the template.
"""

from __future__ import annotations

import argparse
import json
import os

from stack.connectors import OUTBOX_TEMPLATE, ConnectClient, deploy, render
from stack.settings import OUTBOX_DATABASES, StackSettings


def values_from(args: argparse.Namespace, database: str) -> dict[str, str]:
    return {
        "database": database,
        "postgres_host": args.postgres_host,
        "postgres_port": str(args.postgres_port),
        "postgres_user": args.postgres_user,
        "postgres_password": os.environ.get("CHOREO_POSTGRES_PASSWORD", ""),
        "poll_interval_ms": str(args.poll_interval_ms),
    }


def cmd_render(args: argparse.Namespace, settings: StackSettings) -> int:
    for database in args.databases:
        print(json.dumps(render(OUTBOX_TEMPLATE, values_from(args, database)), indent=2))
    return 0


def cmd_deploy(args: argparse.Namespace, settings: StackSettings) -> int:
    rendered = [render(OUTBOX_TEMPLATE, values_from(args, db)) for db in args.databases]
    if not deploy(ConnectClient(args.connect_url), rendered, print, timeout_s=120):
        print(f"every connector already RUNNING with this config on {args.connect_url}")
    return 0


def register(commands: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    connectors = commands.add_parser("connectors", help="render or deploy the outbox connectors")
    sub = connectors.add_subparsers(dest="connectors_command", required=True)
    for name, handler, text in (("render", cmd_render, "print the rendered Debezium JSON"),
                                ("deploy", cmd_deploy, "validate, PUT, wait for RUNNING")):
        parser = sub.add_parser(name, help=text)
        parser.add_argument("--connect-url", default="http://127.0.0.1:8083")
        parser.add_argument("--postgres-host", default="127.0.0.1")
        parser.add_argument("--postgres-port", type=int, default=5432)
        parser.add_argument("--postgres-user", default="postgres",
                            help="the password comes from CHOREO_POSTGRES_PASSWORD")
        parser.add_argument("--poll-interval-ms", type=int, default=10)
        parser.add_argument("--databases", nargs="+", default=list(OUTBOX_DATABASES))
        parser.set_defaults(handler=handler)
