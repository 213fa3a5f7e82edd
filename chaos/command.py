"""``choreo chaos`` (and ``python -m choreo.chaos``): a chaos run from the command line.

Exits 0 when every invariant holds, 1 when any fails, so CI can run it as a gate.
"""

from __future__ import annotations

import argparse

from choreo.chaos.plan import PlanError, default_targets
from choreo.chaos.run import run_chaos
from choreo.stack.settings import StackSettings


def targets(value: str) -> tuple[str, ...]:
    return tuple(name.strip() for name in value.split(",") if name.strip())


def cmd_chaos(args: argparse.Namespace, settings: StackSettings) -> int:
    try:
        result = run_chaos(settings, args.duration, args.rate, args.seed, args.targets,
                           faults=args.faults, order_deadline_s=args.deadline,
                           bound_s=args.bound, supervised=args.supervised)
    except PlanError as error:
        print(f"chaos: {error}")
        return 2
    return 0 if result.passed else 1


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--duration", type=float, default=60.0, help="seconds of load")
    parser.add_argument("--rate", type=float, default=25.0, help="orders per second")
    parser.add_argument("--seed", type=int, default=1,
                        help="decides the orders, the stock and the fault schedule")
    parser.add_argument("--targets", type=targets, default=default_targets(),
                        help=f"comma-separated processes to kill (default:"
                             f" {','.join(default_targets())};"
                             " redis, broker, postgres, psp-fail and psp-slow may be added, and"
                             " replicas (payments-2) and broker nodes (broker-2) that run)")
    parser.add_argument("--faults", type=int, default=None,
                        help="how many SIGKILLs (default: one per ~6 s, at least one per target)")
    parser.add_argument("--deadline", type=float, default=30.0,
                        help="each order's deadline_s: how long before it times out")
    parser.add_argument("--bound", type=float, default=None,
                        help="seconds allowed for quiescence after the last fault"
                             " (default: deadline + 40)")
    parser.add_argument("--supervised", action="store_true",
                        help="only kill: the supervisor restarts (one is started if none"
                             " runs; a stack from `choreo up` always has one)")


def register(commands: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    chaos = commands.add_parser(
        "chaos", help="orders under SIGKILLs of services and Connect; check every invariant")
    add_arguments(chaos)
    chaos.set_defaults(handler=cmd_chaos)
