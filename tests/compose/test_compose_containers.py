"""The saga end to end on compose.yaml's own images, where a Docker engine exists (issue 24,
item 2): testcontainers' DockerCompose builds the choreo image, starts the whole file and
tears it down with its volumes.

These machines have no engine (a Docker client at most), so here the suite is skipped with
the reason; ``tests/compose/test_compose_wheel.py`` runs the same commands and environment
without containers. Run it where an engine and ``docker compose`` (v2) are:
``infra/compose/make-secrets.sh && pytest tests/compose/test_compose_containers.py``.
"""

from __future__ import annotations

import gc
import subprocess
import time
import warnings
from collections.abc import Iterator

import docker
import pytest
from testcontainers.compose import DockerCompose

from tests.wheel import REPO

pytestmark = [pytest.mark.slow, pytest.mark.timeout(1800)]

START_TIMEOUT_S = 900.0
"""Pulling the images and building the choreo image come first, on a fresh machine."""


def engine_problem() -> str | None:
    """Why no compose file can be started here, or None when it can."""
    with warnings.catch_warnings():
        # The SDK leaves the socket of a refused connection open; collected here, unreported.
        warnings.simplefilter("ignore", ResourceWarning)
        try:
            docker.from_env(timeout=5).close()  # asks the engine its API version
        except docker.errors.DockerException as error:
            return f"no Docker engine answers ({error})"
        finally:
            gc.collect()
    try:
        subprocess.run(["docker", "compose", "version"], check=True, capture_output=True,
                       timeout=30)
    except (OSError, subprocess.SubprocessError) as error:
        return f"no `docker compose` (v2) command ({error})"
    return None


@pytest.fixture(scope="module")
def compose() -> Iterator[DockerCompose]:
    problem = engine_problem()
    if problem is not None:
        pytest.skip(f"compose.yaml's images need a container engine: {problem}")
    subprocess.run([str(REPO / "infra" / "compose" / "make-secrets.sh")], check=True,
                   timeout=30)
    # Detached, not --wait: the one-shot jobs exit, and the connectors job is waited for.
    stack = DockerCompose(REPO, compose_file_name="compose.yaml", build=True, wait=False)
    stack.start()
    try:
        wait_for_job(stack, "connectors")
        yield stack
    finally:
        stack.stop(down=True)  # and its volumes


def wait_for_job(stack: DockerCompose, service: str) -> None:
    """Until the one-shot job exited 0; its logs if it failed or never ran."""
    deadline = time.monotonic() + START_TIMEOUT_S
    while time.monotonic() < deadline:
        found = [c for c in stack.get_containers(include_all=True)
                 if c.Service == service and c.State == "exited"]
        if found:
            assert found[0].ExitCode == 0, stack.get_logs(service)
            return
        time.sleep(5)
    pytest.fail(f"{service} did not finish in {START_TIMEOUT_S:.0f} s")


def order(stack: DockerCompose, *args: str) -> str:
    """``choreo order`` inside the orders-api container, as the `cli` service would."""
    stdout, stderr, _ = stack.exec_in_container(
        ["choreo", "order", "--timeout", "120", *args], service_name="orders-api")
    return stdout + stderr


@pytest.mark.parametrize(("args", "outcome"), [
    (("--sku", "mug-white", "--quantity", "2"), "=> CONFIRMED"),
    (("--sku", "cap-navy", "--token", "tok_decline"), "=> CANCELLED"),
    (("--sku", "print-signed", "--quantity", "50"), "=> REJECTED"),
])
def test_the_saga_settles_on_the_compose_stack(compose: DockerCompose, args: tuple[str, ...],
                                               outcome: str) -> None:
    assert outcome in order(compose, *args)


def test_an_order_is_confirmed_with_one_broker_stopped(compose: DockerCompose) -> None:
    """Replication factor 3 and min.insync.replicas 2: one node down stops no producer."""
    command = [*compose.compose_command_property, "stop", "kafka2"]
    subprocess.run(command, cwd=REPO, check=True, timeout=120)
    try:
        assert "=> CONFIRMED" in order(compose, "--sku", "mug-white")
    finally:
        subprocess.run([*command[:-2], "start", "kafka2"], cwd=REPO, check=True, timeout=120)
