"""How the topics a service reads are made, or that they must already exist.

On a laptop a consumer creating its missing topics is a convenience; on a team's cluster
topics are usually provisioned (partitions sized to the load, replication to the
cluster, ``min.insync.replicas`` so that ``acks=all`` means two copies) and a service
creating one with defaults is a mistake to prevent. So both are settings:
``CHOREO_TOPIC_PARTITIONS``, ``CHOREO_TOPIC_REPLICATION_FACTOR``,
``CHOREO_TOPIC_MIN_INSYNC_REPLICAS`` for topics the service creates, and
``CHOREO_CREATE_TOPICS=false`` to create none and refuse to start, naming the topic,
when one is missing.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from choreo.outbox import config
from choreo.outbox.errors import ConfigError

DEFAULT_PARTITIONS = 3
BROKER_DEFAULT = -1
"""KIP-464: the broker's own ``default.replication.factor``."""


@dataclass(frozen=True)
class TopicSettings:
    partitions: int = DEFAULT_PARTITIONS
    replication_factor: int = BROKER_DEFAULT
    min_insync_replicas: int | None = None
    """None: the broker's ``min.insync.replicas``."""
    create: bool = True

    @classmethod
    def from_env(cls, env: Mapping[str, str]) -> TopicSettings:
        factor = config.integer(env, "CHOREO_TOPIC_REPLICATION_FACTOR", BROKER_DEFAULT,
                                ge=BROKER_DEFAULT, le=32)
        if factor == 0:
            raise ConfigError("CHOREO_TOPIC_REPLICATION_FACTOR='0' is not a replication"
                              " factor: 1 or more, or -1 for the broker's default")
        min_insync = config.integer(env, "CHOREO_TOPIC_MIN_INSYNC_REPLICAS", 0, ge=0, le=32)
        if min_insync and factor != BROKER_DEFAULT and min_insync > factor:
            raise ConfigError(f"CHOREO_TOPIC_MIN_INSYNC_REPLICAS={min_insync} is more than"
                              f" CHOREO_TOPIC_REPLICATION_FACTOR={factor}: no write could"
                              " ever be acknowledged")
        return cls(partitions=config.integer(env, "CHOREO_TOPIC_PARTITIONS", DEFAULT_PARTITIONS,
                                             ge=1, le=10000),
                   replication_factor=factor,
                   min_insync_replicas=min_insync or None,
                   create=config.boolean(env, "CHOREO_CREATE_TOPICS", True))

    def topic_config(self) -> dict[str, str]:
        """The per-topic settings a created topic gets beyond the broker's defaults."""
        if self.min_insync_replicas is None:
            return {}
        return {"min.insync.replicas": str(self.min_insync_replicas)}
