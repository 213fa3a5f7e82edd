"""The embedded Apache Kafka broker: one KRaft process, broker and controller, its log on disk.

The jars come from Maven Central (``infra/kafka/pom.xml``, ``stack.install``). The log
lives in ``<state>/kafka/data`` and is kept across ``down``/``up`` and crashes, like any
Kafka's: a SIGKILLed broker comes back with every record it acknowledged (they were in
the page cache; only a machine crash could lose the unflushed tail, as on any Kafka with
default flush settings). The data folder is formatted on the first start with a cluster
id drawn then. A start that finds no formatted log (first start, or the folder was
deleted) begins a *new* log, and only then is the outbox window published again
(``stack.recovery``): that is recorded before the format, so an interrupted start still
knows it on the next try.

Sized for two cores: two network and two I/O threads, a 512 MB heap at most, the serial
collector (a small heap gains nothing from G1's concurrent threads).
"""

from __future__ import annotations

import base64
import shutil
import subprocess
import uuid
from pathlib import Path

from confluent_kafka.admin import AdminClient

from stack.components import Component, quietly
from stack.errors import StartError
from stack.install import broker_lib_dir
from stack.recovery import note_new_log
from stack.settings import StackSettings

NODE_ID = 1
KAFKA_TOOLS = {
    "topics": "org.apache.kafka.tools.TopicCommand",
    "consumer-groups": "org.apache.kafka.tools.consumer.group.ConsumerGroupCommand",
    "configs": "kafka.admin.ConfigCommand",
    "console-consumer": "org.apache.kafka.tools.consumer.ConsoleConsumer",
    "get-offsets": "org.apache.kafka.tools.GetOffsetShell",
    "delete-records": "org.apache.kafka.tools.DeleteRecordsCommand",
    "metadata-quorum": "org.apache.kafka.tools.MetadataQuorumCommand",
}
"""Kafka's own command-line tools (what ``kafka-topics.sh`` and the others run), by the
name ``choreo kafka`` takes; they are in the broker's jars."""


def data_dir(settings: StackSettings) -> Path:
    return settings.kafka_dir / "data"


def log_is_formatted(settings: StackSettings) -> bool:
    return (data_dir(settings) / "meta.properties").exists()


def server_properties(settings: StackSettings) -> str:
    listener = f"127.0.0.1:{settings.kafka_port}"
    controller = f"127.0.0.1:{settings.kafka_controller_port}"
    return "\n".join([
        "process.roles=broker,controller",
        f"node.id={NODE_ID}",
        f"controller.quorum.voters={NODE_ID}@{controller}",
        f"listeners=PLAINTEXT://{listener},CONTROLLER://{controller}",
        f"advertised.listeners=PLAINTEXT://{listener}",
        "controller.listener.names=CONTROLLER",
        "inter.broker.listener.name=PLAINTEXT",
        f"log.dirs={data_dir(settings)}",
        # One node: every internal topic has one replica.
        "offsets.topic.replication.factor=1",
        "transaction.state.log.replication.factor=1",
        "transaction.state.log.min.isr=1",
        "share.coordinator.state.topic.replication.factor=1",
        "share.coordinator.state.topic.min.isr=1",
        # A consumer group of one forms at once instead of after 3 s.
        "group.initial.rebalance.delay.ms=0",
        # Topics are created by the stack with their partition count (``ensure_topics``);
        # a producer naming an unknown topic is an error, not a one-partition topic.
        "auto.create.topics.enable=false",
        "num.network.threads=2",
        "num.io.threads=2",
        "num.recovery.threads.per.data.dir=1",
        "",
    ])


LOG4J = "\n".join([
    "status=warn",
    "appender.out.type=Console",
    "appender.out.name=out",
    "appender.out.layout.type=PatternLayout",
    "appender.out.layout.pattern=%d{ISO8601} %-5p [%t] %c{1}: %m%n",
    "rootLogger.level=WARN",
    "rootLogger.appenderRef.out.ref=out",
    "logger.started.name=kafka.server.KafkaRaftServer",
    "logger.started.level=INFO",
    "",
])


def write_broker_config(settings: StackSettings) -> None:
    settings.kafka_dir.mkdir(parents=True, exist_ok=True)
    (settings.kafka_dir / "server.properties").write_text(server_properties(settings))
    (settings.kafka_dir / "log4j2.properties").write_text(LOG4J)


def java_command(settings: StackSettings, main_class: str, *args: str,
                 heap: tuple[str, ...] = ("-Xmx256m",)) -> list[str]:
    return [shutil.which("java") or "java", *heap, "-XX:+UseSerialGC",
            "-Djava.awt.headless=true",
            f"-Dlog4j2.configurationFile={settings.kafka_dir / 'log4j2.properties'}",
            "-cp", f"{broker_lib_dir(settings.artifact_dir)}/*", main_class, *args]


def new_cluster_id() -> str:
    """What ``kafka-storage.sh random-uuid`` prints: a UUID in URL-safe base64."""
    return base64.urlsafe_b64encode(uuid.uuid4().bytes).decode().rstrip("=")


def prepare_broker(settings: StackSettings) -> None:
    """Write the configuration; format the log folder if it holds no log yet."""
    write_broker_config(settings)
    if log_is_formatted(settings):
        return
    note_new_log(settings)
    shutil.rmtree(data_dir(settings), ignore_errors=True)  # a format cut short
    command = java_command(settings, "kafka.tools.StorageTool", "format",
                           "--cluster-id", new_cluster_id(),
                           "--config", str(settings.kafka_dir / "server.properties"))
    result = subprocess.run(command, capture_output=True, text=True, check=False)
    if result.returncode != 0:
        raise StartError(f"formatting the broker's log failed:\n{result.stderr[-2000:]}")


def broker_component(settings: StackSettings) -> Component:
    command = java_command(settings, "kafka.Kafka", str(settings.kafka_dir / "server.properties"),
                           heap=("-Xms128m", "-Xmx512m"))

    def healthy() -> bool:
        admin = AdminClient({"bootstrap.servers": settings.kafka_bootstrap, "log_level": 0})
        admin.list_topics(timeout=2)
        return True

    return Component("broker", settings.kafka_port, command, quietly(healthy),
                     prepare=lambda: prepare_broker(settings))


def kafka_tool_command(settings: StackSettings, tool: str, args: list[str]) -> list[str]:
    """One of Kafka's tools against the embedded broker; ``--bootstrap-server`` is added
    unless given."""
    if tool not in KAFKA_TOOLS:
        raise StartError(f"unknown Kafka tool {tool!r}; one of: {', '.join(KAFKA_TOOLS)}")
    if not any(arg.startswith("--bootstrap-server") for arg in args):
        args = ["--bootstrap-server", settings.kafka_bootstrap, *args]
    write_broker_config(settings)
    return java_command(settings, KAFKA_TOOLS[tool], *args)
