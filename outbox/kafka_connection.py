"""Where a Kafka cluster is and how a client proves who it is: one setting for every client.

A team's cluster is rarely open: MSK, Confluent Cloud and most self-run clusters want TLS,
SASL or both. Every producer, consumer and admin client choreo builds takes its
properties from one :class:`KafkaConnection`, so a service cannot end up with a secured
producer beside a plaintext admin client. The settings are librdkafka's own
(``security.protocol``, ``sasl.mechanism``, ``ssl.ca.location`` ...), read from
``CHOREO_KAFKA_*`` variables, each of which may be given as a file (``NAME_FILE``, see
``outbox.config``), the way Kubernetes and compose mount secrets.

A wrong combination fails at start-up naming the variable, not as a client that retries
an impossible handshake for ever: SASL credentials without a SASL protocol, a SASL
protocol without them, a CA file that is not there.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

from choreo.outbox import config
from choreo.outbox.errors import ConfigError

KAFKA_BOOTSTRAP = "127.0.0.1:9092"
"""Kafka's own default listener; choreo's embedded stack passes its port (19092)."""

SECURITY_PROTOCOLS = ("PLAINTEXT", "SSL", "SASL_PLAINTEXT", "SASL_SSL")
SASL_MECHANISMS = ("PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512")
"""The mechanisms that need nothing but a user name and a password. OAUTHBEARER and
GSSAPI need a token source or a Kerberos set-up of their own: not offered yet."""


@dataclass(frozen=True)
class KafkaConnection:
    bootstrap: str = KAFKA_BOOTSTRAP
    security_protocol: str = "PLAINTEXT"
    sasl_mechanism: str = ""
    sasl_username: str = ""
    sasl_password: str = field(default="", repr=False)
    ssl_ca_location: str = ""
    """The CA that signed the brokers' certificates; empty: the system's trust store."""
    ssl_certificate_location: str = ""
    """The client's own certificate, for clusters that authenticate clients by TLS (mTLS)."""
    ssl_key_location: str = ""
    ssl_key_password: str = field(default="", repr=False)

    @classmethod
    def from_env(cls, env: Mapping[str, str]) -> KafkaConnection:
        protocol = config.text(env, "CHOREO_KAFKA_SECURITY_PROTOCOL", "PLAINTEXT").upper()
        if protocol not in SECURITY_PROTOCOLS:
            raise ConfigError(f"CHOREO_KAFKA_SECURITY_PROTOCOL={protocol!r} is not one of"
                              f" {', '.join(SECURITY_PROTOCOLS)}")
        connection = cls(
            bootstrap=config.text(env, "CHOREO_KAFKA_BOOTSTRAP", KAFKA_BOOTSTRAP),
            security_protocol=protocol,
            sasl_mechanism=config.text(env, "CHOREO_KAFKA_SASL_MECHANISM").upper(),
            sasl_username=config.text(env, "CHOREO_KAFKA_SASL_USERNAME"),
            sasl_password=config.text(env, "CHOREO_KAFKA_SASL_PASSWORD"),
            ssl_ca_location=config.text(env, "CHOREO_KAFKA_SSL_CA_LOCATION"),
            ssl_certificate_location=config.text(env, "CHOREO_KAFKA_SSL_CERTIFICATE_LOCATION"),
            ssl_key_location=config.text(env, "CHOREO_KAFKA_SSL_KEY_LOCATION"),
            ssl_key_password=config.text(env, "CHOREO_KAFKA_SSL_KEY_PASSWORD"),
        )
        connection.validate()
        return connection

    @property
    def uses_sasl(self) -> bool:
        return self.security_protocol.startswith("SASL_")

    @property
    def uses_tls(self) -> bool:
        return self.security_protocol.endswith("SSL")

    def validate(self) -> None:
        """Refuse what a handshake would refuse later, or what would silently go unused."""
        sasl = {"CHOREO_KAFKA_SASL_MECHANISM": self.sasl_mechanism,
                "CHOREO_KAFKA_SASL_USERNAME": self.sasl_username,
                "CHOREO_KAFKA_SASL_PASSWORD": self.sasl_password}
        tls = {"CHOREO_KAFKA_SSL_CA_LOCATION": self.ssl_ca_location,
               "CHOREO_KAFKA_SSL_CERTIFICATE_LOCATION": self.ssl_certificate_location,
               "CHOREO_KAFKA_SSL_KEY_LOCATION": self.ssl_key_location,
               "CHOREO_KAFKA_SSL_KEY_PASSWORD": self.ssl_key_password}
        _unused(sasl, self.uses_sasl, self.security_protocol, "SASL_PLAINTEXT or SASL_SSL")
        _unused(tls, self.uses_tls, self.security_protocol, "SSL or SASL_SSL")
        if self.uses_sasl:
            for variable, value in sasl.items():
                if not value:
                    raise ConfigError(f"{variable} is required with"
                                      f" CHOREO_KAFKA_SECURITY_PROTOCOL={self.security_protocol}")
            if self.sasl_mechanism not in SASL_MECHANISMS:
                raise ConfigError(f"CHOREO_KAFKA_SASL_MECHANISM={self.sasl_mechanism!r} is not"
                                  f" one of {', '.join(SASL_MECHANISMS)}")
        if self.ssl_key_password and not self.ssl_key_location:
            raise ConfigError("CHOREO_KAFKA_SSL_KEY_PASSWORD is set without"
                              " CHOREO_KAFKA_SSL_KEY_LOCATION, the key it would open")
        if bool(self.ssl_certificate_location) != bool(self.ssl_key_location):
            raise ConfigError("CHOREO_KAFKA_SSL_CERTIFICATE_LOCATION and"
                              " CHOREO_KAFKA_SSL_KEY_LOCATION go together: a client"
                              " certificate needs its key")
        for variable in ("CHOREO_KAFKA_SSL_CA_LOCATION", "CHOREO_KAFKA_SSL_CERTIFICATE_LOCATION",
                         "CHOREO_KAFKA_SSL_KEY_LOCATION"):
            location = tls[variable]
            if location and not (Path(location).is_file() and os.access(location, os.R_OK)):
                raise ConfigError(f"{variable}={location!r} is not a readable file")

    def client_properties(self) -> dict[str, str]:
        """The librdkafka properties every client of this cluster starts from."""
        properties = {"bootstrap.servers": self.bootstrap,
                      "security.protocol": self.security_protocol}
        if self.uses_sasl:
            properties |= {"sasl.mechanism": self.sasl_mechanism,
                           "sasl.username": self.sasl_username,
                           "sasl.password": self.sasl_password}
        optional = {"ssl.ca.location": self.ssl_ca_location,
                    "ssl.certificate.location": self.ssl_certificate_location,
                    "ssl.key.location": self.ssl_key_location,
                    "ssl.key.password": self.ssl_key_password}
        return properties | {name: value for name, value in optional.items() if value}


def connection_of(kafka: KafkaConnection | str) -> KafkaConnection:
    """A bare bootstrap string is a plaintext connection (the embedded stack's default),
    so tests and tools that talk to it need not build one."""
    return kafka if isinstance(kafka, KafkaConnection) else KafkaConnection(bootstrap=kafka)


def _unused(values: Mapping[str, str], applies: bool, protocol: str, needs: str) -> None:
    given = [variable for variable, value in values.items() if value]
    if given and not applies:
        raise ConfigError(f"{given[0]} is set but CHOREO_KAFKA_SECURITY_PROTOCOL={protocol}"
                          f" would not use it (it needs {needs})")
