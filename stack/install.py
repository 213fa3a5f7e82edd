"""Install what the embedded stack needs, idempotently, and never use a half-made artifact.

Two sources: Debian packages (PostgreSQL, Redis, Java 17, Maven) and Maven Central,
from which Maven resolves Apache Kafka and Kafka Connect with Debezium's PostgreSQL
connector, pinned in ``infra/kafka/pom.xml``; and one jar built here, from
``infra/connect-patch``, that fixes a busy wait in Debezium's poll loop. Every artifact
is made in a temporary folder that is renamed into place only when complete, and named
by the digest of what it was made from, so an edited pom or patch is installed again
rather than mixed with the old one.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import tempfile
import zipfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from choreo.stack.errors import InstallError

INFRA_DIR = Path(__file__).resolve().parent.parent / "infra"
CONNECT_PATCH_SOURCES = INFRA_DIR / "connect-patch"
KAFKA_POM = INFRA_DIR / "kafka" / "pom.xml"
MAVEN_DEPENDENCY_GOAL = "dependency:copy-dependencies"
JAVA_SETS = ("broker", "connect")
"""The pom's profiles: the broker's jars (with Kafka's tools), and Connect's with Debezium."""


@dataclass(frozen=True)
class DebianRequirement:
    package: str
    present: Callable[[], bool]


def postgres_bindir() -> Path | None:
    """Debian keeps initdb/pg_ctl in a versioned folder that pg_config names.

    pg_config comes from another package (libpq-dev) than the server, so without it the
    newest ``/usr/lib/postgresql/<version>/bin`` holding an initdb is used.
    """
    pg_config = shutil.which("pg_config")
    if pg_config is not None:
        out = subprocess.run([pg_config, "--bindir"], capture_output=True, text=True,
                             check=False)
        bindir = Path(out.stdout.strip())
        if (bindir / "initdb").exists():
            return bindir
    candidates = sorted(Path("/usr/lib/postgresql").glob("*/bin/initdb"),
                        key=lambda path: int(path.parent.parent.name)
                        if path.parent.parent.name.isdigit() else 0)
    return candidates[-1].parent if candidates else None


DEBIAN_REQUIREMENTS = (
    DebianRequirement("postgresql-15", lambda: postgres_bindir() is not None),
    DebianRequirement("redis-server", lambda: shutil.which("redis-server") is not None),
    DebianRequirement("openjdk-17-jre-headless", lambda: shutil.which("java") is not None),
    DebianRequirement("openjdk-17-jdk-headless", lambda: shutil.which("javac") is not None),
    DebianRequirement("maven", lambda: shutil.which("mvn") is not None),
)


def ensure_debian_packages(report: Callable[[str], None]) -> None:
    missing = [r.package for r in DEBIAN_REQUIREMENTS if not r.present()]
    if not missing:
        return
    if os.geteuid() != 0:
        raise InstallError(
            "missing Debian packages: "
            + " ".join(missing)
            + f"\n  install them with: sudo apt-get install -y {' '.join(missing)}"
        )
    report(f"installing Debian packages: {' '.join(missing)}")
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    for command in (["apt-get", "update", "-qq"], ["apt-get", "install", "-y", "-qq", *missing]):
        result = subprocess.run(command, env=env, capture_output=True, text=True, check=False)
        if result.returncode != 0:
            raise InstallError(f"{' '.join(command)} failed:\n{result.stderr[-2000:]}")
    still_missing = [r.package for r in DEBIAN_REQUIREMENTS if not r.present()]
    if still_missing:
        raise InstallError(f"installed but still not usable: {' '.join(still_missing)}")


def sha256_of(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as stream:
        for block in iter(lambda: stream.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def install_atomically(target: Path, build: Callable[[Path], None]) -> None:
    """Build into a sibling temporary folder and rename it: a crash leaves no half target."""
    if target.exists():
        return
    target.parent.mkdir(parents=True, exist_ok=True)
    scratch = Path(tempfile.mkdtemp(prefix=f".{target.name}-", dir=target.parent))
    try:
        build(scratch)
        scratch.rename(target)
    finally:
        shutil.rmtree(scratch, ignore_errors=True)


def pom_digest() -> str:
    return hashlib.sha256(KAFKA_POM.read_bytes()).hexdigest()[:12]


def java_lib_dir(artifact_dir: Path, java_set: str) -> Path:
    """The jars of one of the pom's profiles (``broker`` or ``connect``), named by the pom."""
    return artifact_dir / f"{java_set}-libs" / pom_digest()


def broker_lib_dir(artifact_dir: Path) -> Path:
    return java_lib_dir(artifact_dir, "broker")


def connect_lib_dir(artifact_dir: Path) -> Path:
    return java_lib_dir(artifact_dir, "connect")


def ensure_java_libs(artifact_dir: Path, java_set: str, report: Callable[[str], None]) -> Path:
    """Maven resolves the profile from Maven Central (into its own ``~/.m2`` cache, so a
    second checkout downloads nothing) and copies the jars into the artifact folder."""
    target = java_lib_dir(artifact_dir, java_set)

    def build(scratch: Path) -> None:
        report(f"resolving the {java_set}'s jars with Maven (infra/kafka/pom.xml)")
        command = [shutil.which("mvn") or "mvn", "-B", "-q", "-f", str(KAFKA_POM),
                   "-P", java_set, MAVEN_DEPENDENCY_GOAL, f"-DoutputDirectory={scratch}"]
        result = subprocess.run(command, capture_output=True, text=True, check=False)
        if result.returncode != 0:
            raise InstallError(f"Maven could not resolve the {java_set}'s jars:\n"
                               f"{(result.stdout + result.stderr)[-3000:]}")
        if not any(scratch.glob("*.jar")):
            raise InstallError(f"Maven resolved no jar for the {java_set}")

    install_atomically(target, build)
    return target


def connect_patch_jar(artifact_dir: Path) -> Path:
    """Named by the digest of its sources, so an edited patch is built again, never stale."""
    digest = hashlib.sha256()
    for source in sorted(CONNECT_PATCH_SOURCES.rglob("*.java")):
        digest.update(str(source.relative_to(CONNECT_PATCH_SOURCES)).encode())
        digest.update(source.read_bytes())
    return artifact_dir / "connect-patch" / digest.hexdigest()[:12] / "choreo-connect-patch.jar"


def ensure_connect_patch(artifact_dir: Path, report: Callable[[str], None]) -> Path:
    """Compile the patch against the installed Debezium jars and pack it as a jar.

    A jar rather than a folder of classes: the JVM's class-data archive, which makes
    Connect restart in seconds, refuses a class path with a non-empty folder on it.
    """
    jar = connect_patch_jar(artifact_dir)

    def build(scratch: Path) -> None:
        report("building the Debezium timer patch")
        classes = scratch / "classes"
        command = [shutil.which("javac") or "javac", "--release", "17", "-nowarn",
                   "-cp", f"{connect_lib_dir(artifact_dir)}/*", "-d", str(classes),
                   *map(str, sorted(CONNECT_PATCH_SOURCES.rglob("*.java")))]
        result = subprocess.run(command, capture_output=True, text=True, check=False)
        if result.returncode != 0:
            raise InstallError(f"could not compile infra/connect-patch:\n{result.stderr[-2000:]}")
        with zipfile.ZipFile(scratch / jar.name, "w") as packed:
            for compiled in sorted(classes.rglob("*.class")):
                packed.write(compiled, compiled.relative_to(classes).as_posix())
        shutil.rmtree(classes)

    install_atomically(jar.parent, build)
    return jar


def ensure_installed(artifact_dir: Path, report: Callable[[str], None]) -> None:
    ensure_debian_packages(report)
    for java_set in JAVA_SETS:
        ensure_java_libs(artifact_dir, java_set, report)
    ensure_connect_patch(artifact_dir, report)
