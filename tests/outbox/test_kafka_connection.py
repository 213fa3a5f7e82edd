"""Kafka client settings for a team's secured cluster, and topic settings, read from the
environment: what each combination gives librdkafka, and every wrong one refused at start-up
naming the variable (the secured broker itself: tests/stack/test_secured_kafka.py)."""

from __future__ import annotations

from pathlib import Path

import pytest

from choreo.outbox.errors import ConfigError
from choreo.outbox.kafka import consumer_config
from choreo.outbox.kafka_connection import KafkaConnection
from choreo.outbox.settings import ServiceSettings
from choreo.outbox.topics import TopicSettings


@pytest.fixture
def ca(tmp_path: Path) -> str:
    path = tmp_path / "ca.pem"
    path.write_text("-----BEGIN CERTIFICATE-----\n")
    return str(path)


def test_plaintext_by_default_at_kafkas_own_port() -> None:
    connection = KafkaConnection.from_env({})
    assert connection.client_properties() == {"bootstrap.servers": "127.0.0.1:9092",
                                              "security.protocol": "PLAINTEXT"}


def test_sasl_ssl_reaches_every_client_with_the_password_from_a_file(tmp_path: Path,
                                                                       ca: str) -> None:
    secret = tmp_path / "kafka-password"
    secret.write_text("s3cret\n")
    env = {"CHOREO_KAFKA_BOOTSTRAP": "b-1.example:9096",
           "CHOREO_KAFKA_SECURITY_PROTOCOL": "sasl_ssl",
           "CHOREO_KAFKA_SASL_MECHANISM": "scram-sha-512",
           "CHOREO_KAFKA_SASL_USERNAME": "orders",
           "CHOREO_KAFKA_SASL_PASSWORD_FILE": str(secret),
           "CHOREO_KAFKA_SSL_CA_LOCATION": ca,
           "CHOREO_DATABASE_URL": "postgresql://orders@db/orders"}
    settings = ServiceSettings.from_env("orders", env)
    expected = {"bootstrap.servers": "b-1.example:9096", "security.protocol": "SASL_SSL",
                "sasl.mechanism": "SCRAM-SHA-512", "sasl.username": "orders",
                "sasl.password": "s3cret", "ssl.ca.location": ca}
    config = consumer_config(settings.kafka, "orders")
    assert {name: config[name] for name in expected} == expected
    assert "s3cret" not in repr(settings)


@pytest.mark.parametrize(("env", "message"), [
    ({"CHOREO_KAFKA_SECURITY_PROTOCOL": "TLS"},
     "CHOREO_KAFKA_SECURITY_PROTOCOL='TLS' is not one of PLAINTEXT, SSL"),
    ({"CHOREO_KAFKA_SECURITY_PROTOCOL": "SASL_SSL", "CHOREO_KAFKA_SASL_MECHANISM": "PLAIN",
      "CHOREO_KAFKA_SASL_USERNAME": "u"},
     "CHOREO_KAFKA_SASL_PASSWORD is required with CHOREO_KAFKA_SECURITY_PROTOCOL=SASL_SSL"),
    ({"CHOREO_KAFKA_SECURITY_PROTOCOL": "SASL_PLAINTEXT", "CHOREO_KAFKA_SASL_MECHANISM": "GSSAPI",
      "CHOREO_KAFKA_SASL_USERNAME": "u", "CHOREO_KAFKA_SASL_PASSWORD": "p"},
     "CHOREO_KAFKA_SASL_MECHANISM='GSSAPI' is not one of PLAIN, SCRAM-SHA-256"),
    ({"CHOREO_KAFKA_SASL_USERNAME": "u"},
     "CHOREO_KAFKA_SASL_USERNAME is set but CHOREO_KAFKA_SECURITY_PROTOCOL=PLAINTEXT would"
     " not use it"),
    ({"CHOREO_KAFKA_SECURITY_PROTOCOL": "SASL_PLAINTEXT",
      "CHOREO_KAFKA_SSL_CA_LOCATION": "/etc/ssl/ca.pem"},
     "CHOREO_KAFKA_SSL_CA_LOCATION is set but CHOREO_KAFKA_SECURITY_PROTOCOL=SASL_PLAINTEXT"),
    ({"CHOREO_KAFKA_SECURITY_PROTOCOL": "SSL", "CHOREO_KAFKA_SSL_CA_LOCATION": "/nonexistent"},
     "CHOREO_KAFKA_SSL_CA_LOCATION='/nonexistent' is not a readable file"),
    ({"CHOREO_KAFKA_SECURITY_PROTOCOL": "SSL", "CHOREO_KAFKA_SSL_KEY_PASSWORD": "k"},
     "CHOREO_KAFKA_SSL_KEY_PASSWORD is set without CHOREO_KAFKA_SSL_KEY_LOCATION"),
    ({"CHOREO_KAFKA_SECURITY_PROTOCOL": "SSL",
      "CHOREO_KAFKA_SSL_CERTIFICATE_LOCATION": "/etc/ssl/client.pem"},
     "CHOREO_KAFKA_SSL_CERTIFICATE_LOCATION and CHOREO_KAFKA_SSL_KEY_LOCATION go together"),
])
def test_a_wrong_combination_is_refused_naming_the_variable(env: dict[str, str],
                                                            message: str) -> None:
    with pytest.raises(ConfigError, match=message.replace("(", r"\(")):
        KafkaConnection.from_env(env)


def test_a_client_certificate_for_mutual_tls(tmp_path: Path, ca: str) -> None:
    for name in ("client.pem", "client.key"):
        (tmp_path / name).write_text("x")
    connection = KafkaConnection.from_env({
        "CHOREO_KAFKA_SECURITY_PROTOCOL": "SSL", "CHOREO_KAFKA_SSL_CA_LOCATION": ca,
        "CHOREO_KAFKA_SSL_CERTIFICATE_LOCATION": str(tmp_path / "client.pem"),
        "CHOREO_KAFKA_SSL_KEY_LOCATION": str(tmp_path / "client.key"),
        "CHOREO_KAFKA_SSL_KEY_PASSWORD": "k"})
    properties = connection.client_properties()
    assert properties["ssl.certificate.location"].endswith("client.pem")
    assert properties["ssl.key.password"] == "k" and "sasl.username" not in properties


def test_topic_settings_default_to_the_brokers_own_replication() -> None:
    assert TopicSettings.from_env({}) == TopicSettings(3, -1, None, True)
    assert TopicSettings().topic_config() == {}
    provisioned = TopicSettings.from_env({"CHOREO_TOPIC_PARTITIONS": "12",
                                          "CHOREO_TOPIC_REPLICATION_FACTOR": "3",
                                          "CHOREO_TOPIC_MIN_INSYNC_REPLICAS": "2",
                                          "CHOREO_CREATE_TOPICS": "false"})
    assert provisioned == TopicSettings(12, 3, 2, False)
    assert provisioned.topic_config() == {"min.insync.replicas": "2"}


@pytest.mark.parametrize(("env", "message"), [
    ({"CHOREO_TOPIC_REPLICATION_FACTOR": "0"}, "CHOREO_TOPIC_REPLICATION_FACTOR='0'"),
    ({"CHOREO_TOPIC_REPLICATION_FACTOR": "2", "CHOREO_TOPIC_MIN_INSYNC_REPLICAS": "3"},
     "CHOREO_TOPIC_MIN_INSYNC_REPLICAS=3 is more than CHOREO_TOPIC_REPLICATION_FACTOR=2"),
    ({"CHOREO_TOPIC_PARTITIONS": "0"}, "CHOREO_TOPIC_PARTITIONS='0'"),
    ({"CHOREO_CREATE_TOPICS": "maybe"}, "CHOREO_CREATE_TOPICS='maybe'"),
])
def test_bad_topic_settings_name_the_variable(env: dict[str, str], message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        TopicSettings.from_env(env)
