"""A service started while its database is unreachable waits for it (issue 21, finding 4).

It used to exit at once; five quick exits and the supervisor gave it up, and it stayed
down after PostgreSQL was back. The database sits behind a fault proxy
(``stack.proxy``) so that it can be unreachable in each way a network fails, while the
real PostgreSQL keeps running for the rest of the suite.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import threading
import time
from urllib.parse import urlsplit, urlunsplit

import pytest
import requests

from choreo.outbox.retry import Backoff
from choreo.outbox.runner import wait_for_database
from choreo.stack.proxy import TcpProxy
from choreo.stack.settings import REPO_ROOT, StackSettings

pytestmark = pytest.mark.postgres


def through(proxy: TcpProxy, database_url: str) -> str:
    parts = urlsplit(database_url)
    return urlunsplit(parts._replace(netloc=f"{parts.username}@127.0.0.1:{proxy.port}"))


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@pytest.mark.parametrize("mode", ["reset", "blackhole"])
def test_the_wait_ends_when_the_database_answers(running_postgres: StackSettings,
                                                mode: str) -> None:
    """A blackholed connection is the hard case: only ``connect_timeout`` ends a try."""
    target = ("127.0.0.1", running_postgres.postgres_port)
    with TcpProxy(target, mode=mode) as proxy:
        waited = threading.Event()
        waiter = threading.Thread(target=lambda: (wait_for_database(
            through(proxy, running_postgres.database_dsn("postgres")),
            Backoff(base_s=0.1, cap_s=0.5)), waited.set()), daemon=True)
        waiter.start()
        assert not waited.wait(3), f"wait_for_database returned with the link in {mode}"
        proxy.set_mode("pass")
        assert waited.wait(15), "still waiting after the database was reachable again"


def test_a_service_started_during_an_outage_stays_up_and_says_it_waits(
        running_postgres: StackSettings) -> None:
    port = free_port()
    target = ("127.0.0.1", running_postgres.postgres_port)
    with TcpProxy(target, mode="reset") as proxy:
        env = {**os.environ, **running_postgres.service_env("inventory", port),
               "CHOREO_DATABASE_URL": through(proxy, running_postgres.database_dsn("inventory"))}
        service = subprocess.Popen([sys.executable, "-m", "choreo.services.inventory"],
                                   cwd=REPO_ROOT, env=env, stdout=subprocess.DEVNULL,
                                   stderr=subprocess.PIPE, text=True)
        try:
            health = None
            deadline = time.monotonic() + 20
            while health is None and time.monotonic() < deadline:
                assert service.poll() is None, f"exited: {service.communicate()[1][-2000:]}"
                try:
                    health = requests.get(f"http://127.0.0.1:{port}/health", timeout=2)
                except requests.ConnectionError:
                    time.sleep(0.2)
            assert health is not None, "no /health while waiting for the database"
            assert health.status_code == 503
            assert health.json() == {"status": "starting", "waiting_for": "database"}
            time.sleep(3)
            assert service.poll() is None, "gave up waiting for the database"
        finally:
            service.send_signal(signal.SIGTERM)
            try:
                service.communicate(timeout=10)
            except subprocess.TimeoutExpired:
                service.kill()
                service.communicate()
        assert service.returncode in (0, -signal.SIGTERM)
