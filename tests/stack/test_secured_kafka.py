"""The whole saga on a broker that wants TLS and SASL/SCRAM, as a team's cluster does.

A stack of its own with ``CHOREO_EMBEDDED_KAFKA_SECURITY=sasl_ssl``: Apache Kafka serves
only SASL_SSL (a throw-away CA from Debian's openssl), so every client choreo starts, the
services, Connect and Debezium's producer, Kafka's own tools, has to present the CA and the
credentials, or nothing moves. Then what a misconfigured client meets: a wrong password
and a missing CA refused with librdkafka's own reason, a plaintext client getting nowhere,
and a service with a wrong password exiting at start-up with the cause in its message.
"""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import replace

import pytest
from confluent_kafka import KafkaException
from confluent_kafka.admin import ConfigResource

from choreo.outbox.kafka import (
    KafkaRefused,
    MissingTopics,
    build_admin,
    ensure_topics,
    list_topics,
)
from choreo.outbox.kafka_connection import KafkaConnection
from choreo.outbox.topics import TopicSettings
from choreo.stack.broker import kafka_tool_command
from choreo.stack.settings import StackSettings
from choreo.testkit.shop import Shop
from tests.support import collect, header, keyed, own_stack

pytestmark = [pytest.mark.stack, pytest.mark.slow, pytest.mark.timeout(600)]

PORT_SHIFT = -3500
"""Apart from the session's stack, partitions' (-4000), the supervisor's (-4500) and
lifecycle's (-5000)."""


@pytest.fixture(scope="module")
def secured() -> Iterator[StackSettings]:
    yield from own_stack("secured", PORT_SHIFT, CHOREO_EMBEDDED_KAFKA_SECURITY="sasl_ssl")


def test_the_saga_runs_end_to_end_over_tls_and_scram(secured: StackSettings) -> None:
    shop = Shop(secured)
    order = shop.place(shop.new_sku(available=5), 2)
    assert shop.wait_terminal(order)["status"] == "CONFIRMED"
    # Debezium published it (Connect's producer authenticated too), and a secured
    # consumer reads it back.
    published = collect(secured.kafka, "order.events", lambda found: len(found) >= 2,
                        accept=keyed(order))
    assert [header(message, "ce_type") for message in published] == ["OrderPlaced",
                                                                       "OrderConfirmed"]


def test_a_plaintext_client_gets_nowhere_and_a_wrong_password_is_named(
        secured: StackSettings) -> None:
    with pytest.raises(KafkaException):
        list_topics(KafkaConnection(secured.kafka_bootstrap), timeout_s=3)
    with pytest.raises(KafkaRefused, match="invalid credentials with SASL mechanism SCRAM"):
        list_topics(replace(secured.kafka, sasl_password="wrong"), timeout_s=5)
    with pytest.raises(KafkaRefused, match="certificate verify failed"):
        list_topics(replace(secured.kafka, ssl_ca_location=""), timeout_s=5)


def test_a_service_with_a_wrong_password_exits_at_start_naming_the_cause(
        secured: StackSettings) -> None:
    env = {**os.environ, **secured.service_env("inventory", 0),
           "CHOREO_KAFKA_SASL_PASSWORD": "wrong"}
    del env["CHOREO_KAFKA_SASL_PASSWORD_FILE"], env["CHOREO_METRICS_PORT"]  # any free port
    result = subprocess.run([sys.executable, "-m", "choreo.services.inventory"], env=env,
                            capture_output=True, text=True, timeout=120, check=False)
    assert result.returncode == 2, result.stderr[-2000:]
    assert "refused this client (SASL_SSL)" in result.stderr
    assert "invalid credentials" in result.stderr


def test_kafkas_own_tools_are_given_the_credentials(secured: StackSettings) -> None:
    command = kafka_tool_command(secured, "topics", ["--list"])
    listed = subprocess.run(command, capture_output=True, text=True, timeout=120, check=False)
    assert listed.returncode == 0, listed.stderr[-2000:]
    assert "order.events" in listed.stdout.split()


def test_topics_as_an_operator_provisions_them(secured: StackSettings) -> None:
    with pytest.raises(MissingTopics, match="topic nobody.events not found and"
                                            " CHOREO_CREATE_TOPICS=false"):
        ensure_topics(secured.kafka, ["order.events", "nobody.events"],
                      TopicSettings(create=False))
    ensure_topics(secured.kafka, ["provisioned.events"],
                  TopicSettings(partitions=2, replication_factor=1, min_insync_replicas=1))
    admin = build_admin(secured.kafka)
    topic = admin.list_topics(timeout=10).topics["provisioned.events"]
    assert len(topic.partitions) == 2
    resource = ConfigResource(ConfigResource.Type.TOPIC, "provisioned.events")
    config = admin.describe_configs([resource])[resource].result(timeout=10)
    assert config["min.insync.replicas"].value == "1"
    assert not config["min.insync.replicas"].is_default  # set on the topic, not inherited
