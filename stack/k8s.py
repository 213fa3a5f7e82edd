"""Kubernetes manifests for choreo on a platform's own Kafka, PostgreSQL and Redis.

Derived from ``stack.manifest``: one Deployment (and PodDisruptionBudget, and a Service
for what is called over HTTP) per entry, so a new participant is deployed without anyone
editing YAML. ``choreo k8s render`` prints them; the rendered files are committed under
``infra/k8s`` and ``tests/test_k8s.py`` checks they equal this module's output and
validate against Kubernetes' own schemas.

Kafka, PostgreSQL and Redis are not deployed here: the ConfigMap names where they are.
Passwords are never rendered: pods mount Secrets the platform team creates, and every
setting that holds one is given as a file (``CHOREO_<NAME>_FILE``, ``outbox.config``;
libpq's ``PGPASSFILE``; Connect's ``DirectoryConfigProvider``).
"""

from __future__ import annotations

import textwrap
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import yaml

from choreo.outbox.topics import DEFAULT_PARTITIONS
from choreo.stack import manifest
from choreo.stack.manifest import Participant

Object = dict[str, Any]

DEBEZIUM_VERSION = "3.6.1.Final"
"""The Debezium the embedded stack validates (``infra/kafka/pom.xml``; a test holds the two
together). Its Connect image is given by its short name, as compose.yaml's are."""
CONNECT_IMAGE = f"debezium/connect:{DEBEZIUM_VERSION}"
CONNECT = "choreo-connect"
CONNECT_PORT = 8083
CONNECT_WORKERS = 2
CONNECT_SECRETS = "/opt/secrets"
"""Where Connect mounts the Secrets, a folder each: connector configs say
``${dir:/opt/secrets/postgres:password}`` and Connect reads that file."""

CONFIG = "choreo"
"""The ConfigMap every choreo container takes its environment from."""
POSTGRES_SECRET, KAFKA_SECRET, REDIS_SECRET = "choreo-postgres", "choreo-kafka", "choreo-redis"
API_KEYS_SECRET = "choreo-api-keys"
SECRETS = "/var/run/secrets/choreo"
PGPASS_DIR = "/var/run/choreo"

RUN_AS = 10001
"""A user the image does not name: nothing in it is writable to the services."""

CONSUMER_GRACE_S = 60
"""SIGTERM to SIGKILL for a consumer: it finishes its batch, saves its positions and lets
its partition leases go, flushes its producer (10 s at most) and joins its jobs thread
(10 s at most); ``choreo restart`` gives the same drain 20 s, this is three times that."""
HTTP_GRACE_S = 30
"""For an HTTP process, after the pre-stop pause: aiohttp's 10 s for the requests in
flight (the psp's slow captures add their delay), then its connection pool closes."""
PRE_STOP_S = 5
"""An HTTP pod keeps serving this long after it is told to stop, until the endpoints
controller has taken it out of its Service; without it, requests race the shutdown."""
CONNECT_GRACE_S = 60
"""Connect's tasks get 10 s to stop (its SHUTDOWN_TIMEOUT), then it commits offsets and
leaves the group."""

LIVENESS = {"periodSeconds": 20, "timeoutSeconds": 5, "failureThreshold": 30}
"""Ten minutes of failed ``/health`` before a restart. ``/health`` answers 503 while the
database is unreachable (a consumer rides the outage out, an intake's pool reconnects);
a tight liveness probe would restart every pod in a loop during a database outage, and
a new process only waits for the same database. Readiness takes them out of traffic."""
READINESS = {"periodSeconds": 5, "timeoutSeconds": 2, "failureThreshold": 3}

REPLICATION_FACTOR, MIN_INSYNC_REPLICAS = 3, 2
"""Of the event topics (which the platform provisions) and Connect's own: one broker may
be down without stopping a producer (``acks=all``) or losing an acknowledged record."""

EXPECTED_SECRETS: Mapping[str, str] = {
    POSTGRES_SECRET: "pgpass (libpq's password file, *:*:*:USER:PASSWORD) and"
                     " password (the same password alone, for Connect)",
    KAFKA_SECRET: "password (the SASL password) and ca.crt (the brokers' CA, PEM)",
    REDIS_SECRET: "password",
    API_KEYS_SECRET: "keys (the intakes' API keys, one a line: add a line to rotate)",
}


@dataclass(frozen=True)
class Document:
    """One object of a file and the comment above it: why it is as it is."""

    comment: str
    body: Object


def labels(name: str, component: str) -> dict[str, str]:
    return {"app.kubernetes.io/name": name, "app.kubernetes.io/component": component,
            "app.kubernetes.io/part-of": "choreo"}


def selector(name: str) -> dict[str, str]:
    return {"app.kubernetes.io/name": name, "app.kubernetes.io/part-of": "choreo"}


def metadata(name: str, component: str, **extra: Any) -> Object:
    return {"name": name, "labels": labels(name, component), **extra}


def role(participant: Participant) -> str:
    """``consumer``, ``intake`` (answers HTTP, consumes nothing) or ``stand-in`` (for an
    external provider: the psp, the notifier)."""
    if not participant.participant:
        return "stand-in"
    return "consumer" if participant.consumer else "intake"


def replicas(participant: Participant) -> int:
    """Two of every part of the saga; one of a stand-in, which the real provider replaces."""
    return 1 if role(participant) == "stand-in" else 2


def config_map(kafka_bootstrap: str, postgres_host: str, redis_url: str) -> Document:
    data = {
        "CHOREO_BIND_HOST": "0.0.0.0",
        "CHOREO_KAFKA_BOOTSTRAP": kafka_bootstrap,
        "CHOREO_KAFKA_SECURITY_PROTOCOL": "SASL_SSL",
        "CHOREO_KAFKA_SASL_MECHANISM": "SCRAM-SHA-512",
        "CHOREO_KAFKA_SASL_USERNAME": "choreo",
        "CHOREO_KAFKA_SASL_PASSWORD_FILE": f"{SECRETS}/kafka/password",
        "CHOREO_KAFKA_SSL_CA_LOCATION": f"{SECRETS}/kafka/ca.crt",
        "CHOREO_CREATE_TOPICS": "false",
        "CHOREO_TOPIC_PARTITIONS": str(DEFAULT_PARTITIONS),
        "CHOREO_TOPIC_REPLICATION_FACTOR": str(REPLICATION_FACTOR),
        "CHOREO_TOPIC_MIN_INSYNC_REPLICAS": str(MIN_INSYNC_REPLICAS),
        "CHOREO_REDIS_URL": redis_url,
        "CHOREO_REDIS_PASSWORD_FILE": f"{SECRETS}/redis/password",
        "PGHOST": postgres_host,
        "PGPORT": "5432",
        "PGUSER": "choreo",
        "PGSSLMODE": "prefer",
        "PGPASSFILE": f"{PGPASS_DIR}/pgpass",
        **{p.url_variable: f"http://{p.name}:{p.port}"
           for p in manifest.MANIFEST if p.url_variable},
    }
    return config_document(
        CONFIG, "config", data,
        "Where the platform's Kafka, PostgreSQL and Redis are, and how to reach them. Edit"
        " the hosts; the passwords are files from the Secrets (never values here). Each"
        " database URL is only its dbname: libpq takes host, port, user, sslmode and the"
        " password file from the PG* variables.")


def config_document(name: str, component: str, data: Mapping[str, str],
                    why: str) -> Document:
    return Document(why, {"apiVersion": "v1", "kind": "ConfigMap",
                          "metadata": metadata(name, component), "data": dict(data)})


def security(read_only: bool = True) -> Object:
    return {"allowPrivilegeEscalation": False, "readOnlyRootFilesystem": read_only,
            "capabilities": {"drop": ["ALL"]}}


POD_SECURITY: Object = {"runAsNonRoot": True, "runAsUser": RUN_AS, "runAsGroup": RUN_AS,
                        "fsGroup": RUN_AS, "seccompProfile": {"type": "RuntimeDefault"}}


def secret_volume(name: str, secret: str, keys: Sequence[str] | None = None) -> Object:
    items = {"items": [{"key": key, "path": key} for key in keys]} if keys else {}
    return {"name": name, "secret": {"secretName": secret, **items}}


def pgpass_init(image: str) -> Object:
    """libpq ignores a password file that its group may read, and a Secret mounted for a
    non-root user (``fsGroup``) is always group-readable: the file is copied, mode 0600,
    into a memory volume of the pod's own."""
    return {"name": "pgpass", "image": image,
            "command": ["install", "-m", "0600", f"{SECRETS}/postgres/pgpass",
                        f"{PGPASS_DIR}/pgpass"],
            "securityContext": security(),
            "volumeMounts": [{"name": "postgres-secret", "mountPath": f"{SECRETS}/postgres",
                              "readOnly": True},
                             {"name": "pgpass", "mountPath": PGPASS_DIR}]}


Needs = tuple[str, ...]
"""What a pod of the choreo image reaches that takes a password: ``postgres``, ``kafka``,
``redis``. It mounts those Secrets only."""
SERVICE_NEEDS: Needs = ("postgres", "kafka", "redis")
INTAKE_NEEDS: Needs = (*SERVICE_NEEDS, "api-keys")
FILE_SECRETS = (("kafka", KAFKA_SECRET), ("redis", REDIS_SECRET), ("api-keys", API_KEYS_SECRET))
"""Secrets mounted whole as a folder of files, by the need that mounts them."""


def choreo_volumes(needs: Needs) -> list[Object]:
    volumes = [secret_volume("postgres-secret", POSTGRES_SECRET, ["pgpass"]),
               {"name": "pgpass", "emptyDir": {"medium": "Memory", "sizeLimit": "1Mi"}}
               ] if "postgres" in needs else []
    volumes += [secret_volume(f"{need}-secret", secret) for need, secret in FILE_SECRETS
                if need in needs]
    return [*volumes, {"name": "tmp", "emptyDir": {}}]


def choreo_mounts(needs: Needs) -> list[Object]:
    mounts = [{"name": "pgpass", "mountPath": PGPASS_DIR, "readOnly": True}
              ] if "postgres" in needs else []
    mounts += [{"name": f"{need}-secret", "mountPath": f"{SECRETS}/{need}", "readOnly": True}
               for need, _ in FILE_SECRETS if need in needs]
    return [*mounts, {"name": "tmp", "mountPath": "/tmp"}]


def choreo_pod(image: str, container: Object, needs: Needs, **spec: Any) -> Object:
    """A pod of the choreo image: non-root, read-only, the Secrets it needs mounted as
    files, the root file system's only writable place an empty /tmp."""
    init = {"initContainers": [pgpass_init(image)]} if "postgres" in needs else {}
    return {**spec, "securityContext": POD_SECURITY, **init,
            "containers": [{**container, "securityContext": security(),
                            "volumeMounts": choreo_mounts(needs)}],
            "volumes": choreo_volumes(needs)}


def http_probe(port: int | str, path: str, timing: Mapping[str, int]) -> Object:
    return {"httpGet": {"path": path, "port": port}, **timing}


def service_container(participant: Participant, image: str) -> Object:
    """``python -m`` as the embedded stack runs it, its ``/health`` port as the stack's."""
    port_variable = "CHOREO_METRICS_PORT" if participant.consumer else participant.port_variable
    container: Object = {
        "name": participant.name, "image": image,
        "command": ["python", "-m", participant.module, *participant.args],
        "ports": [{"name": "http", "containerPort": participant.port}],
        "envFrom": [{"configMapRef": {"name": CONFIG}}],
        "env": [{"name": "CHOREO_DATABASE_URL", "value": f"dbname={participant.database}"},
                {"name": port_variable, "value": str(participant.port)},
                {"name": "OTEL_SERVICE_NAME", "value": participant.name}],
        "readinessProbe": http_probe("http", "/health", READINESS),
        "livenessProbe": http_probe("http", "/health", LIVENESS),
        "resources": {"requests": {"cpu": "100m", "memory": "256Mi"},
                      "limits": {"memory": "512Mi"}},
    }
    if not participant.consumer:
        container["lifecycle"] = {"preStop": {"exec": {"command": ["sleep", str(PRE_STOP_S)]}}}
        # Reachable in the cluster, so it authenticates its callers (outbox.access); a
        # stand-in that only the services call is open on purpose.
        container["env"].append(
            {"name": "CHOREO_API_KEYS_FILE", "value": f"{SECRETS}/api-keys/keys"}
            if role(participant) == "intake" else
            {"name": "CHOREO_ALLOW_ANONYMOUS", "value": "true"})
    return container


def deployment(participant: Participant, image: str) -> Document:
    name, kind = participant.name, role(participant)
    count = replicas(participant)
    spread = [{"maxSkew": 1, "topologyKey": "kubernetes.io/hostname",
               "whenUnsatisfiable": "ScheduleAnyway",
               "labelSelector": {"matchLabels": selector(name)}}] if count > 1 else []
    pod = choreo_pod(
        image, service_container(participant, image),
        INTAKE_NEEDS if kind == "intake" else SERVICE_NEEDS,
        terminationGracePeriodSeconds=CONSUMER_GRACE_S if participant.consumer
        else HTTP_GRACE_S + PRE_STOP_S,
        **({"topologySpreadConstraints": spread} if spread else {}))
    annotations = {"choreo/stand-in": "replace with the real provider and point"
                   f" {participant.url_variable} at it"} if kind == "stand-in" else {}
    comment = {
        "consumer": "a consumer: replicas share its partitions through leases in its"
                    " database; SIGTERM drains (finishes the batch, saves positions,"
                    f" frees leases) within {CONSUMER_GRACE_S} s.",
        "intake": "an HTTP intake behind its Service; clients retry with their"
                  " Idempotency-Key.",
        "stand-in": "a STAND-IN for an external provider, one replica: replace it with the"
                    f" real provider (point {participant.url_variable} at it) and delete"
                    " this Deployment, its Service and its PodDisruptionBudget.",
    }[kind]
    return Document(
        f"{name}: {comment}\nRolling updates add a pod before one is stopped (maxSurge 1,"
        " maxUnavailable 0), so the old pod drains while the new one is already ready.",
        {"apiVersion": "apps/v1", "kind": "Deployment",
         "metadata": metadata(name, kind, **({"annotations": annotations} if annotations
                                             else {})),
         "spec": {
             "replicas": count,
             "selector": {"matchLabels": selector(name)},
             "strategy": {"type": "RollingUpdate",
                          "rollingUpdate": {"maxSurge": 1, "maxUnavailable": 0}},
             "minReadySeconds": 5,
             "template": {
                 "metadata": {"labels": labels(name, kind),
                              "annotations": {"prometheus.io/scrape": "true",
                                              "prometheus.io/port": str(participant.port),
                                              "prometheus.io/path": "/metrics"}},
                 "spec": pod}}})


def disruption_budget(name: str, component: str) -> Document:
    return Document(
        f"{name}: a node drain evicts one pod at a time; an unready pod (a database"
        " outage) may go too, so a drain is never stuck behind it.",
        {"apiVersion": "policy/v1", "kind": "PodDisruptionBudget",
         "metadata": metadata(name, component),
         "spec": {"maxUnavailable": 1, "selector": {"matchLabels": selector(name)},
                  "unhealthyPodEvictionPolicy": "AlwaysAllow"}})


def service(participant: Participant) -> Document:
    return Document(
        f"{participant.name}: its HTTP port, as in the embedded stack.",
        {"apiVersion": "v1", "kind": "Service",
         "metadata": metadata(participant.name, role(participant)),
         "spec": {"selector": selector(participant.name),
                  "ports": [{"name": "http", "port": participant.port,
                             "targetPort": "http"}]}})


def connect_config() -> Document:
    return config_document(CONNECT, "connect", {
        "GROUP_ID": "choreo-connect",
        "CONFIG_STORAGE_TOPIC": "_connect_configs",
        "OFFSET_STORAGE_TOPIC": "_connect_offsets",
        "STATUS_STORAGE_TOPIC": "_connect_status",
        **{f"CONNECT_{topic}_STORAGE_REPLICATION_FACTOR": str(REPLICATION_FACTOR)
           for topic in ("CONFIG", "OFFSET", "STATUS")},
        "OFFSET_FLUSH_INTERVAL_MS": "1000",
        "CONNECT_CONFIG_PROVIDERS": "dir",
        "CONNECT_CONFIG_PROVIDERS_DIR_CLASS":
            "org.apache.kafka.common.config.provider.DirectoryConfigProvider",
        # Only the mounted Secrets: a connector config posted to the REST API must not
        # read any other file of the worker through ${dir:...}.
        "CONNECT_CONFIG_PROVIDERS_DIR_PARAM_ALLOWED_PATHS": CONNECT_SECRETS,
        "HEAP_OPTS": "-Xms256m -Xmx512m",
    }, "Kafka Connect's worker settings, as the Debezium image reads them (CONNECT_A_B is"
       " a.b).\nDistributed mode: connector configs, offsets and status live in these"
       " topics, replicated three times.\nDirectoryConfigProvider: ${dir:/opt/secrets/X:KEY}"
       " is the file KEY of a mounted Secret.")


def connect_service() -> Document:
    return Document(
        "Connect's workers by name (headless): the connectors job and the workers' own"
        " forwarding to the leader.",
        {"apiVersion": "v1", "kind": "Service", "metadata": metadata(CONNECT, "connect"),
         "spec": {"clusterIP": "None", "selector": selector(CONNECT),
                  "ports": [{"name": "rest", "port": CONNECT_PORT, "targetPort": "rest"}]}})


def from_config(name: str, key: str) -> Object:
    return {"name": name, "valueFrom": {"configMapKeyRef": {"name": CONFIG, "key": key}}}


CONNECT_CLIENTS = ("", "PRODUCER_", "CONSUMER_", "ADMIN_")
"""The worker's own clients, and the prefixes of its connectors' producers, consumers and
admin clients, which do not inherit the worker's security settings."""


def connect_kafka_security() -> list[Object]:
    """The services' Kafka security settings, for each of Connect's clients: the same
    cluster, the same user, the password read by Connect from the mounted Secret."""
    jaas = ("org.apache.kafka.common.security.scram.ScramLoginModule required"
            f' username="$(KAFKA_USERNAME)" password="${{dir:{CONNECT_SECRETS}/kafka:password}}";')
    found = [from_config("KAFKA_USERNAME", "CHOREO_KAFKA_SASL_USERNAME")]
    for prefix in CONNECT_CLIENTS:
        found += [from_config(f"CONNECT_{prefix}SECURITY_PROTOCOL",
                              "CHOREO_KAFKA_SECURITY_PROTOCOL"),
                  from_config(f"CONNECT_{prefix}SASL_MECHANISM", "CHOREO_KAFKA_SASL_MECHANISM"),
                  {"name": f"CONNECT_{prefix}SASL_JAAS_CONFIG", "value": jaas},
                  {"name": f"CONNECT_{prefix}SSL_TRUSTSTORE_TYPE", "value": "PEM"},
                  {"name": f"CONNECT_{prefix}SSL_TRUSTSTORE_LOCATION",
                   "value": f"{CONNECT_SECRETS}/kafka/ca.crt"}]
    return found


def connect_statefulset(image: str) -> Document:
    container = {
        "name": "connect", "image": image,
        "ports": [{"name": "rest", "containerPort": CONNECT_PORT}],
        "envFrom": [{"configMapRef": {"name": CONNECT}}],
        "env": [from_config("BOOTSTRAP_SERVERS", "CHOREO_KAFKA_BOOTSTRAP"),
                {"name": "ADVERTISED_HOST_NAME",
                 "valueFrom": {"fieldRef": {"fieldPath": "status.podIP"}}},
                *connect_kafka_security()],
        "startupProbe": http_probe("rest", "/", {"periodSeconds": 5, "failureThreshold": 36}),
        "readinessProbe": http_probe("rest", "/", READINESS),
        "livenessProbe": http_probe("rest", "/", {"periodSeconds": 20, "timeoutSeconds": 5,
                                                  "failureThreshold": 6}),
        "resources": {"requests": {"cpu": "250m", "memory": "768Mi"},
                      "limits": {"memory": "1Gi"}},
        # The image writes its worker file from the environment at start.
        "securityContext": security(read_only=False),
        "volumeMounts": [{"name": name, "mountPath": f"{CONNECT_SECRETS}/{name}",
                          "readOnly": True} for name in ("postgres", "kafka")],
    }
    return Document(
        f"Kafka Connect with Debezium {DEBEZIUM_VERSION}: {CONNECT_WORKERS} workers in"
        " distributed mode, stable names, no volumes (its state is in Kafka). Passwords"
        " reach it as files of the mounted Secrets, read by its config provider: neither"
        " the REST API nor a connector config ever holds one.\nThe SASL login module"
        " follows CHOREO_KAFKA_SASL_MECHANISM's family (SCRAM here; PLAIN: PlainLoginModule).",
        {"apiVersion": "apps/v1", "kind": "StatefulSet", "metadata": metadata(CONNECT, "connect"),
         "spec": {
             "serviceName": CONNECT, "replicas": CONNECT_WORKERS,
             "podManagementPolicy": "Parallel",
             "selector": {"matchLabels": selector(CONNECT)},
             "updateStrategy": {"type": "RollingUpdate"},
             "template": {
                 "metadata": {"labels": labels(CONNECT, "connect")},
                 "spec": {"terminationGracePeriodSeconds": CONNECT_GRACE_S,
                          "securityContext": {"seccompProfile": {"type": "RuntimeDefault"}},
                          "containers": [container],
                          "volumes": [secret_volume("postgres", POSTGRES_SECRET, ["password"]),
                                      secret_volume("kafka", KAFKA_SECRET)]}}}})


POSTGRES_FLAGS = ["--postgres-host", "$(PGHOST)", "--postgres-port", "$(PGPORT)",
                  "--postgres-user", "$(PGUSER)"]
"""``choreo connectors`` flags from the ConfigMap (Kubernetes expands ``$(NAME)``)."""


def job(name: str, image: str, command: list[str], comment: str, needs: Needs,
        env: Sequence[Object] = ()) -> Document:
    container = {"name": name, "image": image, "command": command,
                 "envFrom": [{"configMapRef": {"name": CONFIG}}],
                 **({"env": list(env)} if env else {})}
    return Document(comment, {
        "apiVersion": "batch/v1", "kind": "Job", "metadata": metadata(name, "setup"),
        "spec": {"backoffLimit": 10, "activeDeadlineSeconds": 900,
                 "template": {"metadata": {"labels": labels(name, "setup")},
                              "spec": choreo_pod(image, container, needs,
                                                 restartPolicy="OnFailure")}}})


def slots_job(image: str) -> Document:
    return job(
        "choreo-slots", image, ["choreo", "connectors", "slots", *POSTGRES_FLAGS],
        "Each outbox database's replication slot, before any service writes: rows"
        " committed before the slot exists would never be published. Needs a user with"
        " REPLICATION; idempotent.", ("postgres",))


def connectors_job(image: str) -> Document:
    return job(
        "choreo-connectors", image,
        ["choreo", "connectors", "deploy", "--no-slots", "--connect-url",
         f"http://{CONNECT}:{CONNECT_PORT}", *POSTGRES_FLAGS],
        "The outbox connectors, once the services have created their outbox tables and"
        " publication. The password is a reference Connect resolves from its own"
        " mounted file; Kubernetes leaves ${...} alone.", (),
        env=[{"name": "CHOREO_CONNECT_PASSWORD_REFERENCE",
              "value": f"${{dir:{CONNECT_SECRETS}/postgres:password}}"}])


@dataclass(frozen=True)
class Target:
    """Where the platform's servers are: the ConfigMap's defaults, edited after rendering
    or given to ``choreo k8s render``."""

    image: str
    """The choreo image, built from infra/compose/Dockerfile."""
    connect_image: str = CONNECT_IMAGE
    kafka_bootstrap: str = "kafka:9092"
    postgres_host: str = "postgres"
    redis_url: str = "redis://redis:6379/0"


def files(target: Target, topics: Sequence[str]) -> dict[str, str]:
    """File name to YAML, in the order they are applied: ``kubectl apply -f`` of the
    folder takes them alphabetically, and each stage needs the one before."""
    image = target.image
    services = [document for p in manifest.MANIFEST
                for document in (deployment(p, image), disruption_budget(p.name, role(p)),
                                 *(() if p.consumer else (service(p),)))]
    return {
        "10-setup.yaml": text(setup_header(topics), [
            config_map(target.kafka_bootstrap, target.postgres_host, target.redis_url),
            connect_config(), connect_service(), connect_statefulset(target.connect_image),
            disruption_budget(CONNECT, "connect"), slots_job(image)]),
        "20-services.yaml": text(
            "The services, one Deployment per entry of stack/manifest.py. Apply after"
            " choreo-slots completed.", services),
        "30-connectors.yaml": text(
            "Deploys the outbox connectors to Connect. Apply once the services run.",
            [connectors_job(image)]),
    }


def setup_header(topics: Sequence[str]) -> str:
    secrets = "\n".join(f"  {name}: {keys}" for name, keys in EXPECTED_SECRETS.items())
    return (
        "choreo on Kubernetes, rendered by `choreo k8s render` from stack/manifest.py:"
        " re-render rather than edit (docs/kubernetes.md).\nKafka, PostgreSQL and Redis are"
        " the platform's own: the ConfigMap `choreo` says where they are.\nSecrets are"
        f" referenced, never rendered; create them first (docs/kubernetes.md):\n{secrets}\n"
        f"Topics to provision (CHOREO_CREATE_TOPICS is false; {DEFAULT_PARTITIONS} partitions,"
        f" replication factor {REPLICATION_FACTOR}, min.insync.replicas"
        f" {MIN_INSYNC_REPLICAS}):\n  " + ", ".join(topics) + "\n"
        "Apply in order, each stage finished: 10-setup (wait for job/choreo-slots),"
        " 20-services, 30-connectors.")


def text(header: str, documents: Sequence[Document]) -> str:
    """The file: its header, then each document with its comment, ``---`` between."""
    parts = [comment(header)]
    parts += [comment(doc.comment) + yaml.safe_dump(doc.body, sort_keys=False, width=100)
              for doc in documents]
    return "---\n".join(parts)


def comment(lines: str) -> str:
    """Each line as ``#`` lines of at most 100 characters; an indented line's
    continuation keeps its indent."""
    out = []
    for line in lines.splitlines():
        indent = " " * (len(line) - len(line.lstrip()))
        out += textwrap.wrap(line, width=98, subsequent_indent=indent) or [""]
    return "".join(f"# {line}".rstrip() + "\n" for line in out)
