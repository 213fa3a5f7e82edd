"""The embedded Apache Kafka: KRaft nodes, each broker and controller, their logs on disk.

The jars come from Maven Central (``infra/kafka/pom.xml``, ``stack.install``). Node N's
log lives in ``<state>/kafka/node-N/data`` and is kept across ``down``/``up`` and
crashes, like any Kafka's: a SIGKILLed broker comes back with every record it
acknowledged (they were in the page cache; only a machine crash could lose the
unflushed tail, as on any Kafka with default flush settings).

One node by default; ``choreo up --brokers 3`` (``CHOREO_BROKERS``) runs three on
loopback with every topic replicated three times and ``min.insync.replicas=2``, so one
node at a time, the active controller included, can die without losing an acknowledged
record or stopping producers. The node count is part of the log (the controllers'
quorum is written into it), so a log made with another count is refused, not mixed.

All nodes are formatted together, with one cluster id drawn then, by the first start that
finds no node formatted (the first start, or every data folder deleted): a *new* log,
and only then is the outbox window published again (``stack.recovery``). That is
recorded before the format, so an interrupted start still knows it on the next try. A
single node of several that lost its folder is refused (``prepare_node``).

Sized for two cores: two network and two I/O threads per node, a 512 MB heap at most,
the serial collector (a small heap gains nothing from G1's concurrent threads).
"""

from __future__ import annotations

import base64
import shutil
import subprocess
import uuid
from dataclasses import replace
from pathlib import Path

from choreo.outbox.kafka import build_admin
from choreo.stack import kafka_security
from choreo.stack.components import Component, quietly
from choreo.stack.errors import ConfigError, StartError
from choreo.stack.install import broker_lib_dir
from choreo.stack.recovery import note_new_log
from choreo.stack.settings import BROKER_PORT_STEP, StackSettings

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
CLIENT_CONFIG_FLAG = {"console-consumer": "--consumer.config"}
"""How a tool is given the client properties of a secured broker, where not
``--command-config``."""


def node_name(node: int) -> str:
    """``broker`` for node 1, ``broker-2`` for node 2: its name in the pid registry."""
    return "broker" if node == 1 else f"broker-{node}"


def is_broker_node(name: str) -> bool:
    """``broker``, ``broker-2``, ...: a registry name of one of the broker's nodes."""
    head, _, number = name.partition("-")
    return head == "broker" and (not number or number.isdigit())


def node_dir(settings: StackSettings, node: int) -> Path:
    return settings.kafka_dir / f"node-{node}"


def data_dir(settings: StackSettings, node: int = 1) -> Path:
    return node_dir(settings, node) / "data"


def meta_properties(settings: StackSettings, node: int) -> Path:
    return data_dir(settings, node) / "meta.properties"


def formatted_nodes(settings: StackSettings) -> list[int]:
    return [node for node in settings.broker_nodes() if meta_properties(settings, node).exists()]


def log_is_formatted(settings: StackSettings) -> bool:
    """Whether some node still has the log: only none at all means a new log."""
    return bool(formatted_nodes(settings))


def replication(settings: StackSettings) -> tuple[int, int]:
    """(replication factor, min.insync.replicas): 1/1 alone, 3/2 from three nodes on."""
    factor = min(3, settings.brokers)
    return factor, max(1, factor - 1)


def server_properties(settings: StackSettings, node: int) -> str:
    voters = ",".join(f"{n}@127.0.0.1:{settings.controller_port(n)}"
                      for n in settings.broker_nodes())
    factor, min_insync = replication(settings)
    return "\n".join([
        "process.roles=broker,controller",
        f"node.id={node}",
        f"controller.quorum.voters={voters}",
        *kafka_security.listener_lines(settings, node),
        "controller.listener.names=CONTROLLER",
        f"log.dirs={data_dir(settings, node)}",
        f"default.replication.factor={factor}",
        f"min.insync.replicas={min_insync}",
        f"offsets.topic.replication.factor={factor}",
        f"transaction.state.log.replication.factor={factor}",
        f"transaction.state.log.min.isr={min_insync}",
        f"share.coordinator.state.topic.replication.factor={factor}",
        f"share.coordinator.state.topic.min.isr={min_insync}",
        # A SIGKILLed node is fenced, and its partitions led by another, after this session
        # rather than Kafka's 9 s: on loopback a heartbeat is never late by seconds.
        "broker.heartbeat.interval.ms=1000",
        "broker.session.timeout.ms=4000",
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
    "appender.out.target=SYSTEM_ERR",  # a tool's output stays its own (choreo kafka)
    "appender.out.layout.type=PatternLayout",
    "appender.out.layout.pattern=%d{ISO8601} %-5p [%t] %c{1}: %m%n",
    "rootLogger.level=WARN",
    "rootLogger.appenderRef.out.ref=out",
    "logger.started.name=kafka.server.KafkaRaftServer",
    "logger.started.level=INFO",
    "",
])


def config_file(settings: StackSettings, node: int) -> Path:
    return node_dir(settings, node) / "server.properties"


def write_node_config(settings: StackSettings, node: int) -> None:
    node_dir(settings, node).mkdir(parents=True, exist_ok=True)
    # Private: a secured node's file holds its SCRAM password.
    kafka_security.write_private(config_file(settings, node), server_properties(settings, node))
    (settings.kafka_dir / "log4j2.properties").write_text(LOG4J)


def java_command(settings: StackSettings, main_class: str, *args: str,
                 heap: tuple[str, ...] = ("-Xmx256m",)) -> list[str]:
    return [shutil.which("java") or "java", *heap, "-XX:+UseSerialGC",
            "-Djava.awt.headless=true",
            f"-Dlog4j2.configurationFile={settings.kafka_dir / 'log4j2.properties'}",
            "-cp", f"{broker_lib_dir(settings.artifact_dir)}/*", main_class, *args]


def new_cluster_id() -> str:
    """What ``kafka-storage.sh random-uuid`` prints: a UUID in URL-safe base64, never one
    that starts with ``-`` (Kafka's ``Uuid.randomUuid`` draws again too): a command line
    takes it for an option. One CI run in 64 failed to format the log on it."""
    while (cluster := base64.urlsafe_b64encode(uuid.uuid4().bytes).decode().rstrip("=")
           ).startswith("-"):
        pass
    return cluster


def check_node_count(settings: StackSettings) -> None:
    """A log's quorum is fixed at format: refuse to start it with another node count."""
    recorded = settings.kafka_dir / "brokers"  # read back by ``settings.recorded_brokers``
    recorded.parent.mkdir(parents=True, exist_ok=True)
    if not log_is_formatted(settings):
        recorded.write_text(f"{settings.brokers}\n")
        return
    if not recorded.exists():
        recorded.write_text(f"{len(formatted_nodes(settings))}\n")
    made_with = int(recorded.read_text())
    if made_with != settings.brokers:
        raise ConfigError(
            f"CHOREO_BROKERS={settings.brokers}, but the broker log in {settings.kafka_dir}"
            f" was made by {made_with} node(s); `choreo down`, then delete"
            f" {settings.kafka_dir} to change it (a new log: the outbox window is published"
            " again), or keep the count")


def formatting_marker(settings: StackSettings) -> Path:
    return settings.kafka_dir / "formatting"


def format_new_log(settings: StackSettings) -> None:
    """Every node at once, with one new cluster id. The marker says "a format is under
    way": a start that finds it formats again from scratch, since nothing ran on a log
    whose format was cut short."""
    note_new_log(settings)
    formatting_marker(settings).touch()
    cluster = new_cluster_id()
    scram = kafka_security.scram_format_arguments(settings)
    for node in settings.broker_nodes():
        write_node_config(settings, node)
        shutil.rmtree(data_dir(settings, node), ignore_errors=True)
        command = java_command(settings, "kafka.tools.StorageTool", "format",
                               f"--cluster-id={cluster}",
                               "--config", str(config_file(settings, node)), *scram)
        result = subprocess.run(command, capture_output=True, text=True, check=False)
        if result.returncode != 0:
            raise StartError(f"formatting {node_name(node)}'s log failed:\n"
                             f"{result.stderr[-2000:]}")
    formatting_marker(settings).unlink()


def prepare_node(settings: StackSettings, node: int) -> None:
    """Write the node's configuration; format the log if no node holds it yet.

    A node that lost its folder while the others kept theirs is refused rather than
    formatted alone: with a static quorum, a controller rebuilt from nothing can vote a
    leader into office that misses committed metadata (KIP-853).
    """
    check_node_count(settings)
    if settings.secured:
        kafka_security.ensure_certificates(settings)
    kafka_security.record(settings)
    if not log_is_formatted(settings) or formatting_marker(settings).exists():
        format_new_log(settings)
        return
    write_node_config(settings, node)
    if not meta_properties(settings, node).exists():
        raise StartError(
            f"{node_name(node)}'s log folder {data_dir(settings, node)} is gone while other"
            " nodes kept theirs; a node rebuilt from nothing could elect a controller that"
            f" misses committed metadata. `choreo down`, then delete {settings.kafka_dir}"
            " (a new log: the outbox window is published again)")


def node_component(settings: StackSettings, node: int) -> Component:
    command = java_command(settings, "kafka.Kafka", str(config_file(settings, node)),
                           heap=("-Xms128m", "-Xmx512m"))
    listener = f"127.0.0.1:{settings.broker_port(node)}"

    def healthy() -> bool:
        admin = build_admin(replace(settings.kafka, bootstrap=listener), log_level=0)
        return node in {broker.id for broker in admin.list_topics(timeout=2).brokers.values()}

    moved_by = "CHOREO_KAFKA_PORT" + (f" (node {node}: + {BROKER_PORT_STEP * (node - 1)})"
                                      if node > 1 else "")
    return Component(node_name(node), settings.broker_port(node), command, quietly(healthy),
                     port_setting=moved_by, prepare=lambda: prepare_node(settings, node))


def broker_components(settings: StackSettings) -> list[Component]:
    return [node_component(settings, node) for node in settings.broker_nodes()]


def broker_component(settings: StackSettings) -> Component:
    """Node 1 alone: the whole broker of a single-node stack (and of scratch brokers)."""
    return node_component(settings, 1)


def kafka_tool_command(settings: StackSettings, tool: str, args: list[str]) -> list[str]:
    """One of Kafka's tools against the embedded broker; ``--bootstrap-server`` is added
    unless given."""
    if tool not in KAFKA_TOOLS:
        raise ConfigError(f"unknown Kafka tool {tool!r}; one of: {', '.join(KAFKA_TOOLS)}")
    if not broker_lib_dir(settings.artifact_dir).exists():
        raise ConfigError(f"Kafka's jars are not in {settings.artifact_dir}: `choreo install`"
                          " (or set CHOREO_ARTIFACT_CACHE to where they are)")
    if not any(arg.startswith("--bootstrap-server") for arg in args):
        args = ["--bootstrap-server", settings.kafka_bootstrap, *args]
    flag = CLIENT_CONFIG_FLAG.get(tool, "--command-config")
    if settings.secured and flag not in args:
        args = [*args, flag, str(kafka_security.client_config_file(settings))]
    settings.kafka_dir.mkdir(parents=True, exist_ok=True)
    (settings.kafka_dir / "log4j2.properties").write_text(LOG4J)
    return java_command(settings, KAFKA_TOOLS[tool], *args)
