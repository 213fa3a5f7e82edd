"""``choreo k8s render``: the Kubernetes manifests (``stack.k8s``) for a platform's own
Kafka, PostgreSQL and Redis, printed or written into a folder (``infra/k8s`` holds them
rendered with the defaults)."""

from __future__ import annotations

import argparse
from importlib.metadata import version
from pathlib import Path

from choreo.stack import k8s
from choreo.stack.launcher import service_topics
from choreo.stack.settings import StackSettings


def default_image() -> str:
    """The image of this version, as ``docker build -t choreo:VERSION`` names it."""
    return f"choreo:{version('choreo')}"


def rendered(target: k8s.Target) -> dict[str, str]:
    return k8s.files(target, service_topics())


def cmd_render(args: argparse.Namespace, settings: StackSettings) -> int:
    files = rendered(k8s.Target(image=args.image, connect_image=args.connect_image,
                                kafka_bootstrap=args.kafka_bootstrap,
                                postgres_host=args.postgres_host, redis_url=args.redis_url))
    if args.out is None:
        print("---\n".join(files.values()), end="")
        return 0
    args.out.mkdir(parents=True, exist_ok=True)
    for name, text in files.items():
        (args.out / name).write_text(text)
        print(f"wrote {args.out / name}")
    return 0


def register(commands: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    parent = commands.add_parser("k8s", help="Kubernetes manifests for your own Kafka,"
                                 " PostgreSQL and Redis")
    sub = parent.add_subparsers(dest="k8s_command", required=True)
    render = sub.add_parser("render", help="print the manifests (or write them with --out)")
    defaults = k8s.Target(image=default_image())
    render.add_argument("--image", default=defaults.image,
                        help="the choreo image (default: %(default)s)")
    render.add_argument("--connect-image", default=defaults.connect_image,
                        help="Kafka Connect with Debezium (default: %(default)s)")
    render.add_argument("--kafka-bootstrap", default=defaults.kafka_bootstrap,
                        help="your cluster's bootstrap servers")
    render.add_argument("--postgres-host", default=defaults.postgres_host,
                        help="your PostgreSQL's host")
    render.add_argument("--redis-url", default=defaults.redis_url,
                        help="your Redis, without its password (a Secret)")
    render.add_argument("--out", type=Path, default=None, metavar="DIR",
                        help="write one file per stage into DIR (infra/k8s) instead")
    render.set_defaults(handler=cmd_render)
