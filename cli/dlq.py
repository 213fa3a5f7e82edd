"""``choreo dlq``: look at dead letters in every service database, and act on them.

Replay and discard are requests: the owning consumer carries them out (it has the
handlers), the head entry first and then the events parked behind it, in order.
"""

from __future__ import annotations

import argparse
import json

import psycopg

from choreo.cli.output import add_json_flag, print_json
from choreo.outbox import deadletter
from choreo.stack import manifest
from choreo.stack.settings import StackSettings


def _connect(settings: StackSettings, service: str) -> psycopg.Connection:
    return psycopg.connect(settings.database_dsn(service), autocommit=True)


def cmd_list(args: argparse.Namespace, settings: StackSettings) -> int:
    services = [args.service] if args.service else list(manifest.databases(outbox=True))
    found = []
    for service in services:
        with _connect(settings, service) as conn:
            found += [(service, entry)
                      for entry in deadletter.list_entries(conn, include_done=args.all)]
    if args.json:
        print_json([{"service": service, "seq": entry.seq, "status": entry.status,
                     "key": entry.aggregate_key, "event_type": entry.event_type,
                     "reason": entry.reason} for service, entry in found])
        return 0
    print(f"{'service':<10}{'#':>5}  {'status':<9}{'key':<38}{'event':<24}reason")
    for service, entry in found:
        print(f"{service:<10}{entry.seq:>5}  {entry.status:<9}{entry.aggregate_key:<38}"
              f"{entry.event_type or '?':<24}{entry.reason[:80]}")
    if not found:
        print("no dead letters")
    return 0


def cmd_show(args: argparse.Namespace, settings: StackSettings) -> int:
    with _connect(settings, args.service) as conn:
        entry = deadletter.get_entry(conn, args.seq)
    if entry is None:
        print(f"no dead letter #{args.seq} in {args.service}")
        return 1
    print(json.dumps({
        "seq": entry.seq, "consumer": entry.consumer, "status": entry.status,
        "key": entry.aggregate_key, "event_id": entry.event_id, "event_type": entry.event_type,
        "reason": entry.reason, "attempts": entry.attempts, "origin": entry.delivery.origin,
        "headers": entry.delivery.headers, "created_at": entry.created_at,
        "value_hex": (entry.delivery.value or b"").hex(),
    }, indent=2))
    return 0


def cmd_act(args: argparse.Namespace, settings: StackSettings) -> int:
    with _connect(settings, args.service) as conn:
        try:
            entry = deadletter.request(conn, args.seq, args.action)
        except (LookupError, ValueError) as error:
            print(error)
            return 1
    print(f"{args.action} of #{entry.seq} ({entry.event_type} for {entry.aggregate_key})"
          f" requested; {entry.consumer} carries it out within a second")
    return 0


def register(commands: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    dlq = commands.add_parser("dlq", help="dead letters: list, show, replay, discard")
    sub = dlq.add_subparsers(dest="dlq_command", required=True)
    listing = sub.add_parser("list", help="active dead letters and parked events")
    listing.add_argument("--service", choices=manifest.databases(outbox=True),
                         help="one service's dead letters only")
    listing.add_argument("--all", action="store_true", help="include replayed and discarded")
    add_json_flag(listing)
    listing.set_defaults(handler=cmd_list)
    for action, text in (("show", "one entry with headers and payload"),
                         ("replay", "run the handler again, then what is parked behind it"),
                         ("discard", "drop the entry; what is parked behind it flows on")):
        parser = sub.add_parser(action, help=text)
        parser.add_argument("service", choices=manifest.databases(outbox=True),
                            help="the service whose dead letter it is")
        parser.add_argument("seq", type=int, help="its number, as `dlq list` shows it")
        parser.set_defaults(handler=cmd_show if action == "show" else cmd_act, action=action)
