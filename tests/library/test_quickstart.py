"""docs/library.md, done as a team would do it: the built wheel in a fresh virtual
environment outside the checkout, the participant's files written from the page's own
code blocks, run against the test stack's PostgreSQL, Kafka and Connect (issue 22).

A test from inside the repository cannot see a file the wheel forgot; this one runs only
what the wheel installed (the working directory and the environment hold nothing of the
checkout), so a missing template, schema or module fails here.
"""

from __future__ import annotations

import dataclasses
import os
import re
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest
from confluent_kafka import Consumer

from choreo.stack.processes import ProcessRegistry
from choreo.stack.relays import drop_slot, remove_connector
from choreo.stack.settings import StackSettings
from tests.support import eventually
from tests.wheel import REPO, build_wheel

pytestmark = [pytest.mark.stack, pytest.mark.slow, pytest.mark.timeout(900)]

PAGE = REPO / "docs" / "library.md"
FILE_BLOCK = re.compile(r"^```\w+ (\S+)\n(.*?)^```", re.MULTILINE | re.DOTALL)
"""A fenced block whose language is followed by the path of the file it is."""


def quickstart_files() -> dict[str, str]:
    return {path: text for path, text in FILE_BLOCK.findall(PAGE.read_text())}


def test_the_page_names_the_files_of_a_participant() -> None:
    assert set(quickstart_files()) >= {
        "shipping/__main__.py", "shipping/handlers.py", "shipping/schema.sql",
        "shipping/schemas/parcel/ParcelRegistered.v1.avsc", "register.py",
        "shipping/test_handlers.py"}


def test_the_quickstart_handler_test_passes_in_the_fresh_environment(
        installed: Installed) -> None:
    """The page's own test, with nothing but the wheel and pytest: no database, no broker."""
    subprocess.run([str(installed.python), "-m", "pip", "install", "-q",
                    "--disable-pip-version-check", "pytest"], check=True, timeout=300,
                   env=installed.env, cwd=installed.project)
    ran = subprocess.run([str(installed.python), "-m", "pytest", "-q", "-p", "no:cacheprovider",
                          "shipping"], env=installed.env, cwd=installed.project,
                         capture_output=True, text=True, timeout=120)
    assert ran.returncode == 0, ran.stdout + ran.stderr
    assert "1 passed" in ran.stdout


@dataclasses.dataclass(frozen=True)
class Installed:
    python: Path
    choreo: Path
    project: Path
    env: dict[str, str]
    """Nothing of the checkout's environment: no VIRTUAL_ENV, no PYTHONPATH."""


@pytest.fixture
def installed(tmp_path: Path) -> Installed:
    wheel = build_wheel(tmp_path / "dist")
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True, timeout=120)
    env = {"PATH": f"{venv / 'bin'}:/usr/bin:/bin", "HOME": os.environ.get("HOME", "/root"),
           "LANG": "C.UTF-8"}
    subprocess.run([str(venv / "bin" / "python"), "-m", "pip", "install", "-q",
                    "--disable-pip-version-check", str(wheel)], check=True, timeout=600,
                   env=env, cwd=tmp_path)
    project = tmp_path / "project"
    for path, text in quickstart_files().items():
        (project / path).parent.mkdir(parents=True, exist_ok=True)
        (project / path).write_text(text)
    return Installed(venv / "bin" / "python", venv / "bin" / "choreo", project, env)


@pytest.fixture
def own_database(running_stack: StackSettings) -> Iterator[str]:
    """The team's own database on the stack's PostgreSQL; its connector, slot and the
    database itself are gone afterwards, also on failure."""
    name = f"shipping_{uuid.uuid4().hex[:8]}"
    admin = running_stack.database_dsn("postgres")
    with psycopg.connect(admin, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    try:
        yield name
    finally:
        remove_connector(running_stack, name, report=lambda line: None)
        drop_slot(running_stack, name)
        with psycopg.connect(admin, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def labels(dsn: str, parcel_id: str) -> list[str]:
    with psycopg.connect(dsn) as conn:
        return [row[0] for row in conn.execute(
            "SELECT label FROM labels WHERE parcel_id = %s", (parcel_id,))]


def types_on(bootstrap: str, topic: str, key: str, until: str, timeout_s: float = 60.0
             ) -> list[str]:
    """The ``ce_type`` of every record with this key, read until one is ``until``."""
    consumer = Consumer({"bootstrap.servers": bootstrap, "group.id": f"qs-{uuid.uuid4()}",
                         "auto.offset.reset": "earliest", "log_level": 3})
    consumer.subscribe([topic])
    found: list[str] = []
    deadline = time.monotonic() + timeout_s
    try:
        while time.monotonic() < deadline and until not in found:
            message = consumer.poll(0.5)
            if message is not None and message.error() is None and message.key() == key.encode():
                found += [v.decode() for k, v in message.headers() or [] if k == "ce_type"]
    finally:
        consumer.close()
    return found


def test_the_quickstart_runs_from_the_wheel_outside_the_checkout(
        installed: Installed, own_database: str, running_stack: StackSettings,
        tmp_path: Path) -> None:
    dsn = running_stack.database_dsn(own_database)
    env = {**installed.env, "CHOREO_DATABASE_URL": dsn,
           "CHOREO_KAFKA_BOOTSTRAP": running_stack.kafka_bootstrap}
    registry = ProcessRegistry(tmp_path / "pids", tmp_path / "logs")
    registry.start("shipping", [str(installed.python), "-m", "shipping"], env=env,
                   cwd=installed.project)
    try:
        def tables_made() -> None:
            assert registry.running("shipping"), registry.log_file("shipping").read_text()
            with psycopg.connect(dsn) as conn:
                assert conn.execute("SELECT to_regclass('labels'), to_regclass('outbox')"
                                    ).fetchone() == ("labels", "outbox")

        eventually(tables_made, timeout_s=60)
        subprocess.run([str(installed.choreo), "connectors", "deploy", "--databases",
                        own_database, "--connect-url", running_stack.connect_url,
                        "--postgres-port", str(running_stack.postgres_port)],
                       check=True, timeout=180, env=env, cwd=tmp_path)
        parcel = f"p-{uuid.uuid4().hex[:8]}"
        subprocess.run([str(installed.python), "register.py", parcel, "Berlin"], check=True,
                       timeout=60, env=env, cwd=installed.project)

        eventually(lambda: labels(dsn, parcel) == [f"{parcel} to Berlin"], timeout_s=60)
        assert types_on(running_stack.kafka_bootstrap, "parcel.events", parcel,
                        until="LabelPrinted") == ["ParcelRegistered", "LabelPrinted"]
        assert labels(dsn, parcel) == [f"{parcel} to Berlin"]  # handled once
    finally:
        registry.stop("shipping")
