"""The ``choreo`` command line: one entry point for everything a user does."""

from __future__ import annotations

import argparse
import contextlib
import importlib.metadata
import os
import subprocess
import sys
from collections.abc import Callable, Sequence
from dataclasses import asdict, replace
from typing import Any

import psycopg
import requests
from confluent_kafka import KafkaException

from choreo.chaos import command as chaos_command
from choreo.cli import connectors, dlq, events, k8s, orders, reach, trace
from choreo.cli.output import add_json_flag, print_json
from choreo.outbox.tail_sampling import TailSampling
from choreo.stack import cpu, launcher, restart
from choreo.stack.broker import KAFKA_TOOLS, kafka_tool_command
from choreo.stack.errors import ConfigError, StackError
from choreo.stack.install import ensure_installed
from choreo.stack.services import CONSOLE, service_specs
from choreo.stack.settings import REPO_ROOT, StackSettings

Handler = Callable[[argparse.Namespace, StackSettings], int]


def cmd_up(args: argparse.Namespace, settings: StackSettings) -> int:
    chosen = with_replicas(settings, args.replicas)
    if args.brokers is not None:
        chosen = replace(chosen, brokers=args.brokers)
        chosen.validate()
    launcher.up(chosen, supervised=not args.no_supervisor)
    return 0


def with_replicas(settings: StackSettings, replicas: str | None) -> StackSettings:
    """``--replicas`` given: it replaces ``CHOREO_REPLICAS``, checked the same way."""
    if replicas is None:
        return settings
    chosen = replace(settings, replicas=replicas)
    chosen.validate()
    return chosen


def cmd_install(args: argparse.Namespace, settings: StackSettings) -> int:
    ensure_installed(settings.artifact_dir, print)
    print(f"everything the stack needs is installed (artifacts in {settings.artifact_dir})")
    return 0


def cmd_down(args: argparse.Namespace, settings: StackSettings) -> int:
    launcher.down(settings, drain_timeout_s=args.drain_timeout)
    return 0


def cmd_restart(args: argparse.Namespace, settings: StackSettings) -> int:
    names = restart.plan(settings, args.services, args.all)
    restart.rolling_restart(settings, names, drain_timeout_s=args.drain_timeout,
                            back_timeout_s=args.timeout)
    return 0


def cmd_status(args: argparse.Namespace, settings: StackSettings) -> int:
    usage = cpu.measure(launcher.component_pids(settings), args.cpu_window)
    rows = launcher.status(settings)
    supervisor = launcher.registry_for(settings).running("supervisor")
    breakers = circuits(settings)
    code = 0 if all(row.healthy for row in rows) else 1
    if args.json:
        print_json({
            "components": [{**asdict(row), "health": health_of(row),
                            "cpu_percent": usage.percent(row.name)
                            if row.name in usage.seconds else None} for row in rows],
            "total_rss_bytes": sum(row.rss_bytes for row in rows),
            "total_cpu_percent": usage.total_percent, "cpu_window_s": usage.wall_s,
            "supervisor_pid": supervisor.pid if supervisor else None,
            "checkout": str(REPO_ROOT), "python": sys.executable, "circuits": breakers})
        return code
    print(f"{'component':<16}{'port':>6}{'pid':>9}  {'health':<10}{'memory':>8}{'cpu':>7}"
          f"{'restarts':>10}  last exit")
    for row in rows:
        pid = str(row.pid) if row.pid else "-"
        last_exit = (row.last_exit or "-") + ("  (supervisor gave up)" if row.gave_up else "")
        busy = f"{usage.percent(row.name):.1f}%" if row.name in usage.seconds else "-"
        print(f"{row.name:<16}{row.port:>6}{pid:>9}  {health_of(row):<10}"
              f"{row.rss_bytes / 2**20:>6.0f}MB{busy:>7}{row.restarts:>10}  {last_exit}")
    total = sum(row.rss_bytes for row in rows)
    print(f"{'total (memory: proportional set size)':<41}{total / 2**20:>6.0f}MB"
          f"{usage.total_percent:>6.1f}%  of one core, over {usage.wall_s:.1f}s")
    print(f"supervisor: pid {supervisor.pid}, restarting what exits" if supervisor
          else "supervisor: not running; nothing restarts a process that exits")
    print(f"checkout: {REPO_ROOT}, python {sys.executable}")
    for process, breaker in breakers.items():
        print(f"{process}: " + ", ".join(f"circuit {name} {state}" for name, state
                                         in sorted(breaker["circuits"].items()))
              + ("; partitions paused" if breaker["paused"] else "; consuming"))
    return code


def health_of(row: launcher.ComponentStatus) -> str:
    return "healthy" if row.healthy else ("down" if row.pid is None else "unhealthy")


def circuits(settings: StackSettings) -> dict[str, dict[str, Any]]:
    """Each service's circuit breakers, and whether it holds its partitions paused."""
    found = {}
    for spec in service_specs(settings):
        try:
            health = requests.get(f"http://127.0.0.1:{spec.port(settings)}/health",
                                  timeout=2).json()
        except (requests.RequestException, ValueError):
            continue
        breakers = health.get("circuits") if isinstance(health, dict) else None
        if breakers:
            found[spec.process] = {"circuits": breakers, "paused": bool(health.get("paused"))}
    return found


def cmd_kafka(args: argparse.Namespace, settings: StackSettings) -> int:
    return subprocess.call(kafka_tool_command(settings, args.tool, args.arguments))


def cmd_logs(args: argparse.Namespace, settings: StackSettings) -> int:
    log = launcher.registry_for(settings).log_file(args.component)
    if not log.exists():
        print(f"no log for {args.component} at {log}", file=sys.stderr)
        return 1
    command = ["tail", "-n", str(args.lines)] + (["-F"] if args.follow else []) + [str(log)]
    return subprocess.call(command)


def cmd_console(args: argparse.Namespace, settings: StackSettings) -> int:
    """The web console in the foreground (``choreo up`` runs one already, supervised)."""
    import asyncio

    from choreo.console.app import serve

    if launcher.registry_for(settings).running(CONSOLE) is not None:
        print(f"the console already runs at http://127.0.0.1:{settings.console_port}/"
              " (started by choreo up)")
        return 0
    try:
        asyncio.run(serve(settings, print))
    except OSError as error:
        raise StackError(f"cannot serve the console on 127.0.0.1:{settings.console_port}:"
                         f" {error} (CHOREO_CONSOLE_PORT picks another port)") from None
    return 0


def cmd_schemas(args: argparse.Namespace, settings: StackSettings) -> int:
    """The project's own schemas are also held to its services' contracts; another
    ``--root`` is someone else's folder (``choreo schemas contracts --root`` checks one
    against these services on request)."""
    from choreo.cli.contracts import contract_problems
    from choreo.schemas.check import run_check

    return run_check(args, None if args.root else contract_problems)


def cmd_contracts(args: argparse.Namespace, settings: StackSettings) -> int:
    from choreo.cli.contracts import cmd_contracts as run_contracts

    return run_contracts(args, settings)


def benchmark(args: argparse.Namespace, run: Callable[[], object]) -> int:
    """Run one benchmark; with ``--json`` its tables go to stderr and its summary, as one
    JSON document, to stdout."""
    if not args.json:
        run()
        return 0
    with contextlib.redirect_stdout(sys.stderr):
        summary = run()
    print_json(summary)
    return 0


def cmd_bench_hop(args: argparse.Namespace, settings: StackSettings) -> int:
    from choreo.bench import hop

    return benchmark(args, lambda: hop.main(settings, args.rate, args.seconds, args.total))


def cmd_bench_relay(args: argparse.Namespace, settings: StackSettings) -> int:
    from choreo.bench import relay

    return benchmark(args, lambda: relay.main(settings, args.rate, args.seconds, args.total))


def cmd_bench_consumer(args: argparse.Namespace, settings: StackSettings) -> int:
    from choreo.bench import consumer

    return benchmark(args, lambda: consumer.main(settings, args.events))


def cmd_bench_broker(args: argparse.Namespace, settings: StackSettings) -> int:
    from choreo.bench import broker

    if min(args.partitions) < 1:
        raise ConfigError(f"--partitions: every topic needs at least one, got {args.partitions}")
    return benchmark(args, lambda: broker.main(settings, args.partitions, args.history))


def cmd_bench_saga(args: argparse.Namespace, settings: StackSettings) -> int:
    from choreo.bench import saga

    return benchmark(args, lambda: saga.main(settings, args.rate, args.seconds,
                                             args.max_seconds, args.concurrency, args.replicas))


def cmd_bench_tracing(args: argparse.Namespace, settings: StackSettings) -> int:
    from choreo.bench import tracing

    policy = TailSampling.from_env(os.environ)  # the stack's services read the same
    return benchmark(args, lambda: tracing.main(settings, policy, args.rate, args.seconds,
                                                args.declined))


def cmd_bench_soak(args: argparse.Namespace, settings: StackSettings) -> int:
    from choreo.bench import saga

    return benchmark(args, lambda: saga.soak(settings, args.sagas, args.rate))


def counts(text: str) -> list[int]:
    """A comma-separated list of whole numbers, ``3,12``."""
    try:
        values = [int(part) for part in text.split(",")]
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"{text!r} is not a comma-separated list of whole numbers") from None
    if min(values) < 0:
        raise argparse.ArgumentTypeError(f"{text!r} holds a negative number")
    return values


def add_event_load(parser: argparse.ArgumentParser, each: str, handler: Handler) -> None:
    """The outbox-event load ``bench hop`` and ``bench relay`` share: a steady run, then
    one as fast as it goes."""
    parser.add_argument("--rate", type=float, default=200.0, help="steady events/s")
    parser.add_argument("--seconds", type=float, default=10.0, help=f"steady run{each}")
    parser.add_argument("--total", type=int, default=5000,
                        help=f"events in the max-rate run{each}")
    parser.set_defaults(handler=handler)


EXIT_FAILED = 1
EXIT_USAGE = 2
EXIT_UNREACHABLE = 3
EXIT_CODES = f"""exit status:
  0  done; for a check, every check passed
  {EXIT_FAILED}  a check or verdict failed (status: a component unhealthy; schemas check,
     chaos: an invariant broken), or what was asked for is not there
  {EXIT_USAGE}  usage or configuration: unknown arguments, a bad setting (named), a port
     in use, settings that differ from the running stack's
  {EXIT_UNREACHABLE}  the stack: a part the command needs does not answer, or could not be
     started or do what was asked (one line on stderr says which)"""
"""Scripts tell "fix your command" from "start the stack" from "look at the result"."""


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="choreo", description=__doc__, epilog=EXIT_CODES,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--version", action="version",
                        version=f"choreo {importlib.metadata.version('choreo')}")
    commands = parser.add_subparsers(dest="command", required=True)
    up = commands.add_parser("up", help="install what is missing and start the stack under"
                             " a supervisor that restarts what exits")
    up.add_argument("--no-supervisor", action="store_true",
                    help="start the processes from this command; nothing restarts them")
    up.add_argument("--replicas", metavar="SERVICE=N,...", default=None,
                    help="processes per consumer service (inventory, payments, orders-worker),"
                    " sharing its database and partitions: payments=2,inventory=2 (sets"
                    " CHOREO_REPLICAS; replicas a running stack already has are kept)")
    up.add_argument("--brokers", type=int, default=None, metavar="N",
                    help="Kafka nodes on loopback (sets CHOREO_BROKERS; default: as the log"
                    " was made, else 1); 3 replicates every topic three times with"
                    " min.insync.replicas=2")
    up.set_defaults(handler=cmd_up)
    commands.add_parser("install", help="install Debian packages and stack artifacts only"
                        ).set_defaults(handler=cmd_install)
    down = commands.add_parser("down", help="stop the supervisor and the intake, let the"
                               " consumers drain, then stop every process the stack started")
    down.add_argument("--drain-timeout", type=float, default=launcher.DRAIN_TIMEOUT_S,
                      help="seconds to wait for the consumers to catch up (default: %(default)s)")
    down.set_defaults(handler=cmd_down)
    rolling = commands.add_parser(
        "restart", help="restart services one at a time, each drained (SIGTERM by pid) and"
        " back consuming before the next")
    rolling.add_argument("services", nargs="*", metavar="SERVICE",
                         help=", ".join(restart.order()))
    rolling.add_argument("--all", action="store_true",
                         help=f"every service, in the order {', '.join(restart.order())}")
    rolling.add_argument("--drain-timeout", type=float, default=20.0,
                         help="seconds from SIGTERM to exit before it fails (default: %(default)s)")
    rolling.add_argument("--timeout", type=float, default=60.0,
                         help="seconds to be healthy and consuming again (default: %(default)s)")
    rolling.set_defaults(handler=cmd_restart)
    status = commands.add_parser("status", help="each component's port, pid, health, memory"
                                 " and CPU")
    status.add_argument("--cpu-window", type=float, default=2.0,
                        help="seconds over which CPU is measured (default: %(default)s)")
    add_json_flag(status)
    status.set_defaults(handler=cmd_status)
    kafka = commands.add_parser(
        "kafka", help="one of Kafka's own tools against the embedded broker (from its jars;"
        " --bootstrap-server is added): choreo kafka consumer-groups --list")
    kafka.add_argument("tool", choices=sorted(KAFKA_TOOLS),
                       help="which of Kafka's tools; what follows is its own arguments")
    kafka.add_argument("arguments", nargs=argparse.REMAINDER,
                       help="passed to the tool as they are")
    kafka.set_defaults(handler=cmd_kafka)
    logs = commands.add_parser("logs", help="show a component's log")
    logs.add_argument("component", help="a process of `choreo status`")
    logs.add_argument("-n", "--lines", type=int, default=50, help="how many of the last lines")
    logs.add_argument("-f", "--follow", action="store_true", help="keep printing new lines")
    logs.set_defaults(handler=cmd_logs)
    commands.add_parser("console", help="the web console on 127.0.0.1 (choreo up starts it"
                        " too): sagas, stuck sagas, traces, dead letters, stock"
                        ).set_defaults(handler=cmd_console)
    dlq.register(commands)
    orders.register(commands)
    trace.register(commands)
    events.register(commands)
    connectors.register(commands)
    k8s.register(commands)
    chaos_command.register(commands)
    bench = commands.add_parser("bench", help="benchmarks that print their figures")
    bench_commands = bench.add_subparsers(dest="bench_command", required=True)
    add_event_load(bench_commands.add_parser(
        "hop", help="commit -> consumer latency and throughput"), "", cmd_bench_hop)
    add_event_load(bench_commands.add_parser(
        "relay", help="Debezium vs the polling relay on one stack: hop, events/s, CPU, DB load"),
        ", per relay", cmd_bench_relay)
    consumer = bench_commands.add_parser(
        "consumer", help="events/s of one consumer; Redis fast path vs inbox only")
    consumer.add_argument("--events", type=int, default=10000, help="events to consume")
    consumer.set_defaults(handler=cmd_bench_consumer)
    broker = bench_commands.add_parser(
        "broker", help="a scratch embedded broker: fetch CPU and catch-up by partition count"
        " and history")
    broker.add_argument("--partitions", type=counts, default=[3, 12],
                        help="partitions per topic, comma-separated (default 3,12)")
    broker.add_argument("--history", type=counts, default=[0, 15000],
                        help="one-record batches written first, comma-separated (default 0,15000)")
    broker.set_defaults(handler=cmd_bench_broker)
    saga = bench_commands.add_parser("saga", help="orders API -> terminal state: latency, sagas/s")
    saga.add_argument("--rate", type=float, default=50.0,
                      help="steady orders/s (0 skips the steady run)")
    saga.add_argument("--seconds", type=float, default=20.0, help="length of the steady run")
    saga.add_argument("--max-seconds", type=float, default=20.0,
                      help="length of the max run (0 skips it)")
    saga.add_argument("--concurrency", type=int, default=128,
                      help="HTTP requests in flight (steady), sagas in flight (max)")
    saga.add_argument("--replicas", metavar="SERVICE=N,...", default=None,
                      help="then the same runs again with these replicas added (started and"
                      " stopped by the benchmark), and the ratios: inventory=2,payments=2")
    saga.set_defaults(handler=cmd_bench_saga)
    tracing = bench_commands.add_parser(
        "tracing", help="what the span store's tail sampling keeps and saves, under a"
        " steady load with declined orders")
    tracing.add_argument("--rate", type=float, default=50.0, help="steady orders/s")
    tracing.add_argument("--seconds", type=float, default=120.0, help="length of the run")
    tracing.add_argument("--declined", type=float, default=0.1,
                         help="share of the orders the psp declines (default 0.1)")
    tracing.set_defaults(handler=cmd_bench_tracing)
    soak = bench_commands.add_parser("soak", help="many sagas at a steady rate: the first"
                                     " and the last window side by side")
    soak.add_argument("--sagas", type=int, default=50_000, help="sagas to place in all")
    soak.add_argument("--rate", type=float, default=60.0, help="steady orders/s")
    soak.set_defaults(handler=cmd_bench_soak)
    for each in bench_commands.choices.values():
        each.add_argument("--json", action="store_true",
                          help="the summary as one JSON document on stdout; the tables go to"
                          " stderr")
    schemas = commands.add_parser("schemas", help="Avro schema tools")
    schema_commands = schemas.add_subparsers(dest="schemas_command", required=True)
    check = schema_commands.add_parser(
        "check", help="every version compatible with all earlier ones; released ones unedited")
    check.add_argument("--root", help="schema folder (default: the project's schemas/)")
    check.add_argument("--git-ref", default=None,
                       help="compare released versions against this git ref (default: HEAD)")
    check.set_defaults(handler=cmd_schemas)
    contracts = schema_commands.add_parser(
        "contracts", help="only the contracts: every consumer reads every version written,"
        " every schema is emitted, every emit has a schema")
    contracts.add_argument("--root", help="schema folder (default: the project's schemas/)")
    contracts.set_defaults(handler=cmd_contracts)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        settings = StackSettings.from_env(os.environ)
        reach.require(settings, reach.needs(args))
        handler: Handler = args.handler
        return handler(args, settings)
    except ConfigError as error:
        print(f"choreo: {error}", file=sys.stderr)
        return EXIT_USAGE
    except StackError as error:
        print(f"choreo: {error}", file=sys.stderr)
        return EXIT_UNREACHABLE
    except psycopg.OperationalError as error:  # went away while the command ran
        print(f"choreo: lost PostgreSQL ({first_line(error)}); is the stack up? (choreo up)",
              file=sys.stderr)
        return EXIT_UNREACHABLE
    except requests.ConnectionError as error:
        where = error.request.url if error.request is not None else "a service"
        print(f"choreo: no answer from {where}; is the stack up? (choreo up)", file=sys.stderr)
        return EXIT_UNREACHABLE
    except KafkaException as error:  # the broker went away, or timed out, mid-command
        print(f"choreo: the broker did not answer ({error.args[0]}); is the stack up?"
              " (choreo up)", file=sys.stderr)
        return EXIT_UNREACHABLE


def first_line(error: Exception) -> str:
    """Drivers explain over several lines; one is enough to say what failed."""
    return next(iter(str(error).strip().splitlines()), type(error).__name__)


if __name__ == "__main__":
    sys.exit(main())
