"""A secured embedded broker: TLS from a throw-away CA, SASL/SCRAM, as a team's cluster has.

``CHOREO_EMBEDDED_KAFKA_SECURITY=sasl_ssl`` makes the embedded Kafka serve its client and
inter-broker listener as ``SASL_SSL`` only, so that everything choreo starts (the
services, the relays, Connect and Debezium's producer, Kafka's tools, the stack's own
admin clients) is proven to work against a cluster that refuses plaintext and strangers.
It is the path a platform team's MSK or self-run cluster takes, tried here for real.

- **TLS**: Debian's ``openssl`` makes a CA and a broker certificate for ``127.0.0.1`` and
  ``localhost`` in ``<state>/kafka/tls`` the first time they are missing; Kafka reads them
  as PEM (KIP-651), librdkafka and Connect trust the CA file.
- **SASL/SCRAM-SHA-512**: the user ``choreo`` is written into the log when it is
  formatted (``kafka-storage format --add-scram``: KRaft has no ZooKeeper to hold it), with
  a password drawn then and kept in ``<state>/kafka/scram-password`` (mode 600). Every log
  gets the user, so a plaintext log can be secured later without a new format.
- The controllers' listener stays plaintext on loopback: only brokers and controllers
  speak it, and no client can be pointed at it.
"""

from __future__ import annotations

import secrets
import shutil
import subprocess
from pathlib import Path

from choreo.stack.errors import StartError
from choreo.stack.settings import SCRAM_MECHANISM, SCRAM_USER, StackSettings

SCRAM_LOGIN = "org.apache.kafka.common.security.scram.ScramLoginModule"
CERTIFICATE_DAYS = 3650


def scram_format_arguments(settings: StackSettings) -> list[str]:
    """Draw the log's password and give ``kafka-storage format`` the user it bootstraps."""
    password = secrets.token_urlsafe(24)
    write_private(settings.scram_password_file, password + "\n")
    return ["--add-scram", f"{SCRAM_MECHANISM}=[name={SCRAM_USER},password={password}]"]


def record(settings: StackSettings) -> None:
    """How the listeners are served, for later commands that are not given the variable."""
    settings.kafka_dir.mkdir(parents=True, exist_ok=True)
    (settings.kafka_dir / "security").write_text(settings.embedded_kafka_security + "\n")


def jaas(settings: StackSettings) -> str:
    password = read_password(settings)
    return f'{SCRAM_LOGIN} required username="{SCRAM_USER}" password="{password}";'


def read_password(settings: StackSettings) -> str:
    try:
        return settings.scram_password_file.read_text().strip()
    except FileNotFoundError:
        raise StartError(f"{settings.scram_password_file} is missing: this broker log was made"
                         " before the embedded broker could be secured. `choreo down`, delete"
                         f" {settings.kafka_dir} (a new log) and start again") from None


def listener_lines(settings: StackSettings, node: int) -> list[str]:
    """The node's listeners: plaintext, or SASL_SSL for clients and brokers alike."""
    listener = f"127.0.0.1:{settings.broker_port(node)}"
    controller = f"127.0.0.1:{settings.controller_port(node)}"
    if not settings.secured:
        return [f"listeners=PLAINTEXT://{listener},CONTROLLER://{controller}",
                f"advertised.listeners=PLAINTEXT://{listener}",
                "inter.broker.listener.name=PLAINTEXT"]
    tls = settings.kafka_tls_dir
    mechanism = SCRAM_MECHANISM.lower()
    return [f"listeners=SASL_SSL://{listener},CONTROLLER://{controller}",
            f"advertised.listeners=SASL_SSL://{listener}",
            "listener.security.protocol.map=SASL_SSL:SASL_SSL,CONTROLLER:PLAINTEXT",
            "inter.broker.listener.name=SASL_SSL",
            f"sasl.enabled.mechanisms={SCRAM_MECHANISM}",
            f"sasl.mechanism.inter.broker.protocol={SCRAM_MECHANISM}",
            f"listener.name.sasl_ssl.{mechanism}.sasl.jaas.config={jaas(settings)}",
            "ssl.keystore.type=PEM",
            f"ssl.keystore.location={tls / 'broker.pem'}",
            "ssl.truststore.type=PEM",
            f"ssl.truststore.location={settings.kafka_ca_file}"]


def java_client_lines(settings: StackSettings, prefix: str = "") -> list[str]:
    """What a Java client (Connect's worker, producer and admin; Kafka's tools) needs."""
    if not settings.secured:
        return []
    return [f"{prefix}security.protocol=SASL_SSL",
            f"{prefix}sasl.mechanism={SCRAM_MECHANISM}",
            f"{prefix}sasl.jaas.config={jaas(settings)}",
            f"{prefix}ssl.truststore.type=PEM",
            f"{prefix}ssl.truststore.location={settings.kafka_ca_file}"]


def client_config_file(settings: StackSettings) -> Path:
    """The client properties Kafka's own tools take (``--command-config`` and the like)."""
    path = settings.kafka_tls_dir / "client.properties"
    write_private(path, "\n".join([*java_client_lines(settings), ""]))
    return path


def write_private(path: Path, text: str) -> None:
    """A file with a password in it: readable by its owner only, from its first byte."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.touch(mode=0o600)
    path.chmod(0o600)
    path.write_text(text)


def ensure_certificates(settings: StackSettings) -> None:
    """A CA and a broker certificate signed by it, made once and kept with the log."""
    tls = settings.kafka_tls_dir
    if (tls / "broker.pem").exists() and settings.kafka_ca_file.exists():
        return
    openssl = shutil.which("openssl")
    if openssl is None:
        raise StartError("CHOREO_EMBEDDED_KAFKA_SECURITY=sasl_ssl needs Debian's openssl to"
                         " make the broker's certificate: apt-get install openssl")
    tls.mkdir(parents=True, exist_ok=True)
    (tls / "san.cnf").write_text("subjectAltName=IP:127.0.0.1,DNS:localhost\n")
    steps = [
        ["req", "-x509", "-newkey", "rsa:2048", "-noenc", "-keyout", "ca.key", "-out", "ca.pem",
         "-days", str(CERTIFICATE_DAYS), "-subj", "/CN=choreo embedded Kafka CA"],
        ["req", "-newkey", "rsa:2048", "-noenc", "-keyout", "broker.key", "-out", "broker.csr",
         "-subj", "/CN=127.0.0.1"],
        ["x509", "-req", "-in", "broker.csr", "-CA", "ca.pem", "-CAkey", "ca.key",
         "-CAcreateserial", "-out", "broker.crt", "-days", str(CERTIFICATE_DAYS),
         "-extfile", "san.cnf"],
    ]
    for step in steps:
        result = subprocess.run([openssl, *step], cwd=tls, capture_output=True, text=True,
                                check=False)
        if result.returncode != 0:
            raise StartError(f"openssl {step[0]} failed making the broker's certificate:\n"
                             f"{result.stderr[-1000:]}")
    write_private(tls / "broker.pem",
                  (tls / "broker.key").read_text() + (tls / "broker.crt").read_text())
    for leftover in ("broker.csr", "ca.srl", "san.cnf"):
        (tls / leftover).unlink(missing_ok=True)
