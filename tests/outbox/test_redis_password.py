"""A Redis that wants a password: the password from ``CHOREO_REDIS_PASSWORD`` (or its file)
is used, and a wrong or missing one stops the service at start instead of leaving dedupe
silently skipped on every event. A Redis of its own (``requirepass``), stopped by pid."""

from __future__ import annotations

import shutil
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis

from choreo.outbox.dedupe import RedisDedupe
from choreo.outbox.errors import ConfigError
from choreo.outbox.runner import dedupe_store
from choreo.outbox.settings import ServiceSettings
from choreo.stack.components import port_is_free

PASSWORD = "redis-s3cret"


@pytest.fixture(scope="module")
def guarded_redis() -> Iterator[str]:
    port = next(port for port in range(24900, 24990) if port_is_free(port))
    server = subprocess.Popen([shutil.which("redis-server") or "redis-server", "--port", str(port),
                               "--bind", "127.0.0.1", "--save", "", "--appendonly", "no",
                               "--requirepass", PASSWORD], stdout=subprocess.DEVNULL)
    try:
        url = f"redis://127.0.0.1:{port}/0"
        deadline = time.monotonic() + 10
        while True:
            try:
                redis.Redis.from_url(url, password=PASSWORD).ping()
                break
            except redis.ConnectionError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.1)
        yield url
    finally:
        server.terminate()
        server.wait(timeout=10)


def settings(url: str, **env: str) -> ServiceSettings:
    return ServiceSettings.from_env("probe", {"CHOREO_DATABASE_URL": "postgresql://p@h/db",
                                              "CHOREO_REDIS_URL": url, **env})


def test_the_password_from_a_file_is_used_and_never_shown(guarded_redis: str,
                                                           tmp_path: Path) -> None:
    secret = tmp_path / "redis-password"
    secret.write_text(PASSWORD + "\n")
    configured = settings(guarded_redis, CHOREO_REDIS_PASSWORD_FILE=str(secret))
    assert PASSWORD not in repr(configured)
    store = dedupe_store(configured)
    assert isinstance(store, RedisDedupe)
    store.mark("probe", "event-1")
    assert store.seen("probe", "event-1")


@pytest.mark.parametrize(("env", "message"), [
    ({}, "Redis wants a password: set CHOREO_REDIS_PASSWORD"),
    ({"CHOREO_REDIS_PASSWORD": "wrong"}, "Redis refused this client's credentials"),
])
def test_a_missing_or_wrong_password_stops_the_start(guarded_redis: str, env: dict[str, str],
                                                     message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        dedupe_store(settings(guarded_redis, **env))


def test_a_redis_that_is_down_is_no_reason_not_to_start() -> None:
    closed = next(port for port in range(24990, 25000) if port_is_free(port))
    assert isinstance(dedupe_store(settings(f"redis://127.0.0.1:{closed}/0")), RedisDedupe)
