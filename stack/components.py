"""PostgreSQL, Redis and Connect: how each is prepared, started and probed (the broker:
``stack.broker``).

Each component is a command plus a health probe. The launcher (``stack/launcher.py``)
starts them in order and waits on the probe, so this module knows nothing about
ordering, pid files or the command line.
"""

from __future__ import annotations

import hashlib
import logging
import os
import shutil
import signal
import socket
import subprocess
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import psycopg
import redis
import requests

from choreo.stack import kafka_security, manifest
from choreo.stack.connect_offsets import forget_offsets_of_another_cluster
from choreo.stack.errors import StartError
from choreo.stack.install import connect_lib_dir, connect_patch_jar, postgres_bindir
from choreo.stack.processes import reap
from choreo.stack.settings import TELEMETRY_DATABASE, StackSettings

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Component:
    name: str
    port: int
    command: list[str]
    healthy: Callable[[], bool]
    user: str | None = None
    env: dict[str, str] | None = None
    stop_signal: int = signal.SIGTERM
    prepare: Callable[[], None] | None = None
    port_setting: str = ""
    """The variable that moves its port, for the "port in use" error; by default
    ``CHOREO_<NAME>_PORT``."""
    needed_first: bool = False
    """A server the others need (PostgreSQL, Redis): a supervisor restarting it waits until
    it is healthy before it restarts anything else, since they would only fail meanwhile."""


def free_port() -> int:
    """A port nobody listens on now, chosen by the kernel: for a scratch server of a test or
    a benchmark that needs no fixed address."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def port_is_free(port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def quietly(probe: Callable[[], bool]) -> Callable[[], bool]:
    """A probe that fails by raising means "not yet": only the timeout turns it into an error."""

    def guarded() -> bool:
        try:
            return probe()
        except Exception:  # noqa: BLE001 - any failure of a health probe means "not healthy yet"
            return False

    return guarded


# PostgreSQL -----------------------------------------------------------------------------

def postgres_user() -> str | None:
    """PostgreSQL refuses to run as root; run it as Debian's ``postgres`` user then."""
    return "postgres" if os.geteuid() == 0 else None


def prepare_postgres(settings: StackSettings) -> None:
    bindir = postgres_bindir()
    if bindir is None:
        raise StartError("PostgreSQL's initdb was not found (pg_config --bindir)")
    data_dir = settings.postgres_data_dir
    socket_dir = settings.state_dir / "postgres-socket"
    user = postgres_user()
    for folder in (data_dir, socket_dir):
        folder.mkdir(parents=True, exist_ok=True)
        if user:
            shutil.chown(folder, user, user)
    if user and subprocess.run(["test", "-w", str(data_dir)], user=user, check=False).returncode:
        raise StartError(
            f"PostgreSQL runs as user {user!r}, which cannot reach {data_dir};"
            " choose a CHOREO_STATE_DIR whose parent folders every user may enter"
        )
    wait_for_dead_postmaster(data_dir)
    wait_for_released_memory(data_dir)
    if (data_dir / "PG_VERSION").exists():
        return
    result = subprocess.run(
        [str(bindir / "initdb"), "-D", str(data_dir), "-U", "postgres", "-A", "trust",
         "-E", "UTF8", "--no-instructions"],
        capture_output=True, text=True, user=user, check=False,
    )
    if result.returncode != 0:
        raise StartError(f"initdb failed:\n{result.stderr[-2000:]}")


def wait_for_dead_postmaster(data_dir: Path, timeout_s: float = 10.0) -> None:
    """Let a SIGKILLed postmaster's zombie be reaped before starting a new one.

    PostgreSQL's lock-file check asks the kernel whether the pid in ``postmaster.pid``
    exists, and a zombie does: a restart right after ``kill("postgres")`` then exits
    with "lock file postmaster.pid already exists". A live postmaster is left for
    PostgreSQL itself to report.
    """
    try:
        pid = int((data_dir / "postmaster.pid").read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        reap(pid)  # our own child when this interpreter started it: collect it here
        try:
            state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
        except (OSError, IndexError):
            return
        if state != "Z":
            return
        time.sleep(0.05)


def wait_for_released_memory(data_dir: Path, timeout_s: float = 10.0,
                             table: Path = Path("/proc/sysvipc/shm")) -> bool:
    """Let the backends of a killed postmaster exit before a new one starts.

    They notice the postmaster's death on their own, a moment later (seconds on a loaded
    machine); until then they hold its shared memory, and a new postmaster exits with
    "pre-existing shared memory block ... is still in use" (seen in CI while two suites
    shared the cores). Returns whether nothing holds the block any more; a postmaster
    still alive is left for PostgreSQL itself to report.
    """
    try:
        lines = (data_dir / "postmaster.pid").read_text().splitlines()
        pid, shmid = int(lines[0]), lines[6].split()[1]
    except (OSError, ValueError, IndexError):
        return True
    if Path(f"/proc/{pid}").exists():
        return True
    deadline = time.monotonic() + timeout_s
    while attached(table, shmid) > 0:
        if time.monotonic() > deadline:
            return False
        time.sleep(0.05)
    return True


def attached(table: Path, shmid: str) -> int:
    """How many processes hold the System V shared memory segment ``shmid``."""
    try:
        rows = [line.split() for line in table.read_text().splitlines()[1:]]
    except OSError:
        return 0
    return next((int(row[6]) for row in rows if len(row) > 6 and row[1] == shmid), 0)


def postgres_component(settings: StackSettings) -> Component:
    bindir = postgres_bindir() or Path("/usr/lib/postgresql/15/bin")
    command = [
        str(bindir / "postgres"), "-D", str(settings.postgres_data_dir),
        "-p", str(settings.postgres_port),
        "-c", "listen_addresses=127.0.0.1",
        "-c", f"unix_socket_directories={settings.state_dir / 'postgres-socket'}",
        "-c", "wal_level=logical",
        "-c", "max_replication_slots=20",
        "-c", "max_wal_senders=20",
        "-c", "max_connections=200",
        "-c", "shared_buffers=128MB",
        # A client cut off by a partition holds its session, and a consumer's session
        # holds its partition leases: probe idle peers after 10 s, every 5 s, give up
        # after 3 (about 25 s), not the kernel's two hours.
        "-c", "tcp_keepalives_idle=10",
        "-c", "tcp_keepalives_interval=5",
        "-c", "tcp_keepalives_count=3",
    ]

    def healthy() -> bool:
        with psycopg.connect(settings.database_dsn("postgres"), connect_timeout=2):
            return True

    # SIGINT is PostgreSQL's "fast" shutdown; SIGTERM would wait for every client to leave.
    return Component("postgres", settings.postgres_port, command, quietly(healthy),
                     needed_first=True,
                     user=postgres_user(), stop_signal=signal.SIGINT,
                     prepare=lambda: prepare_postgres(settings))


def ensure_database(settings: StackSettings, name: str) -> str:
    """A database of the stack's server, created if missing; returns its DSN. For the
    benchmarks' and test suites' databases of their own beside the services'."""
    with psycopg.connect(settings.database_dsn("postgres"), autocommit=True) as conn:
        if not conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", (name,)).fetchone():
            conn.execute(f'CREATE DATABASE "{name}"'.encode())
    return settings.database_dsn(name)


def create_service_databases(settings: StackSettings) -> None:
    with psycopg.connect(settings.database_dsn("postgres"), autocommit=True) as conn:
        existing = {row[0] for row in conn.execute("SELECT datname FROM pg_database")}
        for database in (*manifest.databases(), TELEMETRY_DATABASE):
            if database not in existing:
                conn.execute(f'CREATE DATABASE "{database}"')


# Redis ----------------------------------------------------------------------------------

def redis_component(settings: StackSettings) -> Component:
    command = [
        shutil.which("redis-server") or "redis-server",
        "--port", str(settings.redis_port), "--bind", "127.0.0.1",
        "--save", "", "--appendonly", "no", "--daemonize", "no",
    ]

    def healthy() -> bool:
        return bool(redis.Redis.from_url(settings.redis_url, socket_timeout=1).ping())

    return Component("redis", settings.redis_port, command, quietly(healthy), needed_first=True)


# Kafka Connect with Debezium ---------------------------------------------------------------

def connect_offsets_file(settings: StackSettings) -> Path:
    """Where the standalone worker keeps source offsets (Debezium's LSNs) between starts."""
    return settings.connect_dir / "offsets.dat"


def write_connect_config(settings: StackSettings) -> None:
    """Standalone mode: one worker, no worker group, offsets in a file of the state dir.

    One worker is all the embedded stack runs, and a standalone one starts without a
    group rebalance and restarts after a SIGKILL without waiting out a dead member's
    session: Connect is back in about 2 s. Its connector configs live in memory only, so
    whoever starts it deploys them again (``stack.cdc.ensure_connect``). A team's own
    cluster runs Connect distributed; the connector JSON is the same.
    """
    folder = settings.connect_dir
    folder.mkdir(parents=True, exist_ok=True)
    worker = folder / "worker.properties"
    # A secured broker: the worker's own clients, the source tasks' producers and their
    # admin client (topic creation) each take the credentials under their own prefix.
    security = [line for prefix in ("", "producer.", "consumer.", "admin.")
                for line in kafka_security.java_client_lines(settings, prefix)]
    kafka_security.write_private(worker, "\n".join([
        f"bootstrap.servers={settings.kafka_bootstrap}",
        *security,
        f"offset.storage.file.filename={connect_offsets_file(settings)}",
        # Debezium confirms an LSN to its slot only after the offset holding it was
        # flushed, so this bounds how much a SIGKILL makes it send again.
        "offset.flush.interval.ms=500",
        f"listeners=http://127.0.0.1:{settings.connect_port}",
        # Debezium's jars declare their plugins for the ServiceLoader: no class scan.
        "plugin.discovery=service_load",
        "enable.metrics.push=false",
        "key.converter=org.apache.kafka.connect.storage.StringConverter",
        "value.converter=io.debezium.converters.BinaryDataConverter",
        "",
    ]))
    log4j = folder / "log4j2.properties"
    log4j.write_text("\n".join([
        "status=warn",
        "appender.out.type=Console",
        "appender.out.name=out",
        "appender.out.layout.type=PatternLayout",
        "appender.out.layout.pattern=%d{ISO8601} %-5p [%t] %c{1}: %m%n",
        "rootLogger.level=INFO",
        "rootLogger.appenderRef.out.ref=out",
        "logger.kafka.name=org.apache.kafka",
        "logger.kafka.level=WARN",
        "logger.connect.name=org.apache.kafka.connect.runtime",
        "logger.connect.level=INFO",
        "",
    ]))


def connect_classpath(settings: StackSettings) -> str:
    """The timer patch first: the JVM takes a class from the first entry that has it."""
    artifacts = settings.artifact_dir
    return f"{connect_patch_jar(artifacts)}:{connect_lib_dir(artifacts)}/*"


def class_archive(settings: StackSettings) -> Path:
    """The JVM's class-data archive for this exact class path (named by its digest).

    Kept beside the jars, so every stack of the machine shares it; a reinstall that
    changes a jar, or a new patch, changes the name, so a stale archive is never used.
    """
    lib_dir = connect_lib_dir(settings.artifact_dir)
    jars = sorted((jar.name, jar.stat().st_size) for jar in lib_dir.glob("*.jar"))
    digest = hashlib.sha256(repr((connect_classpath(settings), jars)).encode()).hexdigest()[:12]
    return settings.artifact_dir / "connect-cds" / f"classes-{digest}.jsa"


def class_list(settings: StackSettings) -> Path:
    """The classes a worker loaded, written by the JVM as it loads them."""
    return class_archive(settings).with_suffix(".classlist")


def class_archive_dump(settings: StackSettings) -> Component | None:
    """A one-off, low-priority process that turns a worker's class list into the archive.

    Started after a worker without an archive is up, beside it rather than in the way
    of the next (re)start: a static dump costs about 13 s of CPU, which on a busy
    machine would otherwise delay the very restart the archive is meant to speed up.
    It writes to a partial file renamed at the end, so a worker starting meanwhile
    never maps half an archive; a list cut short only makes the archive smaller.
    """
    archive, listed = class_archive(settings), class_list(settings)
    if archive.exists() or not listed.exists():
        return None
    partial = archive.with_suffix(".jsa.partial")
    java = shutil.which("java") or "java"
    classpath = connect_classpath(settings)
    # The running worker may still be appending to the list: dump all but its last line.
    script = ('head -n -1 "$1" > "$1.snapshot" && nice -n 19 "$0" -XX:+UseSerialGC'
              ' -Xshare:dump -XX:SharedClassListFile="$1.snapshot"'
              ' -XX:SharedArchiveFile="$2" -cp "$3" && mv "$2" "$4"')
    return Component("connect-cds", 0, ["sh", "-c", script, java, str(listed), str(partial),
                                        classpath, str(archive)], lambda: archive.exists())


def jvm_start_flags(settings: StackSettings) -> list[str]:
    """What makes a restarted worker come back in seconds rather than ten or more.

    Most of Connect's start is the JVM loading and compiling some 10,000 classes. An
    application class-data archive (AppCDS: the first start lists the classes it
    loads, ``class_archive_dump`` turns the list into the archive, every later start
    maps it) and the C1 compiler alone (``TieredStopAtLevel=1``) cut the CPU of a start
    from about 10 s to about 3 s (docs/stack.md). A missing archive is no error: the
    JVM then runs without one. C1 code is slower than C2's at peak, which outbox rates
    do not reach.
    """
    archive = class_archive(settings)
    flags = [f"-XX:SharedArchiveFile={archive}", "-XX:TieredStopAtLevel=1"]
    if not archive.exists():
        class_list(settings).parent.mkdir(parents=True, exist_ok=True)
        flags.append(f"-XX:DumpLoadedClassList={class_list(settings)}")
    return flags


def connect_component(settings: StackSettings) -> Component:
    worker = settings.connect_dir / "worker.properties"
    log4j = settings.connect_dir / "log4j2.properties"
    java = shutil.which("java") or "java"
    classpath = connect_classpath(settings)
    command = [
        java, "-Xms128m", "-Xmx512m", "-XX:+UseSerialGC",
        *jvm_start_flags(settings),
        f"-Dlog4j2.configurationFile={log4j}",
        "-cp", classpath,
        # The worker file alone (connector files are optional): the connectors are
        # deployed over REST, validated first, like on any cluster.
        "org.apache.kafka.connect.cli.ConnectStandalone", str(worker),
    ]

    def healthy() -> bool:
        plugins = requests.get(f"{settings.connect_url}/connector-plugins", timeout=2)
        return plugins.ok and "PostgresConnector" in plugins.text

    def prepare() -> None:
        write_connect_config(settings)
        if forget_offsets_of_another_cluster(settings, connect_offsets_file(settings)):
            log.warning("connect: offsets of another PostgreSQL cluster dropped; streaming"
                        " from the replication slots")

    return Component("connect", settings.connect_port, command, quietly(healthy),
                     prepare=prepare)
