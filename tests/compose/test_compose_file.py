"""compose.yaml without a container engine: valid for Debian's docker-compose, current with
the manifest, its images pinned, its image holding every package, its Prometheus config
and rules valid, its secrets made by the documented script and kept out of git."""

from __future__ import annotations

import re
import shutil
import stat
import subprocess
import tomllib
from pathlib import Path

import pytest

from choreo.stack import compose, k8s, manifest
from tests.compose.composefile import (
    COMPOSE,
    argv,
    environment,
    is_choreo,
    replicas,
    secret_files,
    services,
)
from tests.wheel import REPO

INFRA = REPO / "infra" / "compose"


def tool(name: str, package: str) -> str:
    found = shutil.which(name)
    if found is None:
        pytest.fail(f"{name} is missing: infra/test.sh installs Debian's {package} package")
    return found


@pytest.mark.parametrize("relative", sorted(compose.RENDERED))
def test_the_generated_parts_are_current(relative: str) -> None:
    current = (REPO / relative).read_text()
    assert compose.RENDERED[relative](current) == current, (
        f"{relative} is stale: python -m choreo.stack.compose")


def test_every_manifest_process_is_a_compose_service_and_no_other() -> None:
    """Same name, module and arguments as the manifest; consumers twice."""
    defined = services()
    runs_a_service = {name: argv(service) for name, service in defined.items()
                      if is_choreo(service) and argv(service)[:2] == ["python", "-m"]}
    assert runs_a_service == {p.name: ["python", "-m", p.module, *p.args]
                              for p in manifest.MANIFEST}
    assert {name: replicas(defined[name]) for name in runs_a_service} == {
        p.name: compose.CONSUMER_REPLICAS if p.consumer else 1 for p in manifest.MANIFEST}


def test_docker_compose_validates_the_file() -> None:
    """Debian's docker-compose 1.29 parses and checks the file as an engine would be given it
    (the secret files need not exist for that)."""
    result = subprocess.run([tool("docker-compose", "docker-compose"), "-f", str(COMPOSE),
                             "config", "-q"], cwd=REPO, capture_output=True, text=True,
                            timeout=120)
    assert result.returncode == 0, result.stdout + result.stderr


def test_every_image_is_pinned_by_version_and_named_without_a_registry() -> None:
    images = {name: str(service["image"]) for name, service in services().items()}
    for name, image in images.items():
        repository, _, tag = image.rpartition(":")
        assert repository and re.search(r"\d", tag) and tag != "latest", f"{name}: {image}"
        assert "." not in repository.split("/")[0], f"{name}: {image} names a registry"
    version = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["version"]
    assert {image for image in images.values() if image.startswith("choreo:")} == {
        f"choreo:{version}"}


def test_kafka_and_connect_are_the_releases_the_embedded_stack_validates() -> None:
    """The pom the embedded stack installs from names both versions."""
    pom = (REPO / "infra" / "kafka" / "pom.xml").read_text()
    kafka = re.search(r"<kafka.version>(.+)</kafka.version>", pom)
    assert kafka is not None
    defined = services()
    assert {defined[f"kafka{node}"]["image"] for node in (1, 2, 3)} | {
        defined["topics"]["image"]} == {f"apache/kafka:{kafka[1]}"}
    assert f"<debezium.version>{k8s.DEBEZIUM_VERSION}</debezium.version>" in pom
    assert {defined[name]["image"] for name in ("connect-1", "connect-2")} == {
        k8s.CONNECT_IMAGE}


def test_passwords_come_only_from_files() -> None:
    """No value in the file is a password: the variables that carry one name a file, and
    the connectors job passes a reference Connect resolves from its secret."""
    for name, service in services().items():
        for variable, value in environment(service).items():
            if re.search("PASSWORD|PGPASS|API_KEY|TOKEN", variable):
                assert variable.endswith(("_FILE", "PASSFILE")) or value.startswith(
                    "${dir:/run/secrets:"), f"{name}: {variable}"


def test_the_image_copies_every_package_folder() -> None:
    """``pip wheel .`` in the image sees only what is copied: a folder missing here (the
    console and the ``choreo`` package were) fails the image build."""
    package_dirs = tomllib.loads((REPO / "pyproject.toml").read_text())[
        "tool"]["setuptools"]["package-dir"]
    copied = re.findall(r"^COPY (\S+) \1$", (INFRA / "Dockerfile").read_text(), re.MULTILINE)
    assert sorted(copied) == sorted(package_dirs.values())


def test_prometheus_loads_the_shipped_rules_with_the_compose_config(tmp_path: Path) -> None:
    """Laid out as compose mounts them: the config and alerts.yml side by side."""
    shutil.copy(INFRA / "prometheus.yml", tmp_path / "prometheus.yml")
    shutil.copy(REPO / "infra" / "monitoring" / "alerts.yml", tmp_path / "alerts.yml")
    result = subprocess.run([tool("promtool", "prometheus"), "check", "config",
                             "prometheus.yml"], cwd=tmp_path, capture_output=True, text=True,
                            timeout=60)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "SUCCESS: 1 rule files found" in result.stdout + result.stderr


def test_the_secrets_script_makes_every_secret_once_and_git_ignores_them(
        tmp_path: Path) -> None:
    folder = tmp_path / "secrets"
    make = [str(INFRA / "make-secrets.sh"), str(folder)]
    subprocess.run(make, check=True, capture_output=True, timeout=30)
    declared = secret_files()
    made = {path.name: path.read_text() for path in folder.iterdir()}
    assert set(made) == set(declared)
    subprocess.run(make, check=True, capture_output=True, timeout=30)
    assert {path.name: path.read_text() for path in folder.iterdir()} == made  # kept
    password = made["postgres_password"]
    assert re.fullmatch(r"[A-Za-z0-9]{32}", password)
    assert made["pgpass"] == f"postgres:5432:*:postgres:{password}\n"
    assert stat.S_IMODE(folder.stat().st_mode) == 0o700
    assert stat.S_IMODE((folder / "pgpass").stat().st_mode) == 0o600  # or libpq ignores it
    ignored = subprocess.run(["git", "check-ignore", *declared.values()], cwd=REPO,
                             capture_output=True, text=True, timeout=30)
    assert sorted(ignored.stdout.split()) == sorted(declared.values()), "must be git-ignored"
