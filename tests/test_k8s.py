"""The Kubernetes manifests under infra/k8s: what ``choreo k8s render`` prints, valid
against Kubernetes' own schemas, and holding what the rolling upgrade and the secrets
promise. No cluster is needed (or exists here): ``kubernetes-validate`` checks each
object offline against the OpenAPI schemas it bundles, strictly (an unknown field fails)."""

from __future__ import annotations

import functools
import re
from pathlib import Path
from typing import Any

import kubernetes_validate
import pytest
import yaml

from choreo.cli.k8s import default_image, rendered
from choreo.stack import k8s, manifest

REPO = Path(__file__).resolve().parent.parent
FOLDER = REPO / "infra" / "k8s"
VERSIONS = ("1.30.0", kubernetes_validate.latest_version())
"""The oldest Kubernetes still commonly run, and the newest the package knows."""


def committed() -> dict[str, str]:
    return {path.name: path.read_text() for path in sorted(FOLDER.glob("*.yaml"))}


@functools.cache
def objects() -> list[dict[str, Any]]:
    loader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
    return [doc for text in committed().values() for doc in yaml.load_all(text, loader) if doc]


def named(kind: str) -> dict[str, dict[str, Any]]:
    return {o["metadata"]["name"]: o for o in objects() if o["kind"] == kind}


def test_the_committed_files_are_what_choreo_k8s_render_writes() -> None:
    assert committed() == rendered(k8s.Target(image=default_image())), (
        "infra/k8s is stale: choreo k8s render --out infra/k8s")


@pytest.mark.parametrize("version", VERSIONS)
def test_every_object_validates_against_the_kubernetes_schemas(version: str) -> None:
    for body in objects():
        try:
            kubernetes_validate.validate(body, version, strict=True)
        except kubernetes_validate.ValidationError as error:
            path = ".".join(str(part) for part in error.path)
            pytest.fail(f"{body['kind']}/{body['metadata']['name']}: {path}: {error.message}")


def test_each_manifest_entry_runs_as_the_embedded_stack_runs_it() -> None:
    deployments = named("Deployment")
    assert list(deployments) == list(manifest.names())
    for p in manifest.MANIFEST:
        spec = deployments[p.name]["spec"]
        (container,) = spec["template"]["spec"]["containers"]
        assert container["command"] == ["python", "-m", p.module, *p.args]
        assert container["ports"] == [{"name": "http", "containerPort": p.port}]
        env = {e["name"]: e["value"] for e in container["env"]}
        assert env["CHOREO_METRICS_PORT" if p.consumer else p.port_variable] == str(p.port)
        for probe in ("readinessProbe", "livenessProbe"):
            assert container[probe]["httpGet"] == {"path": "/health", "port": "http"}
        assert spec["replicas"] == (2 if p.participant else 1)
        assert (deployments[p.name]["metadata"]["labels"]["app.kubernetes.io/component"]
                == "stand-in") == (not p.participant)


def test_a_rolling_update_drains_an_old_pod_only_beside_a_ready_new_one() -> None:
    budgets = named("PodDisruptionBudget")
    for name, deployment in named("Deployment").items():
        assert deployment["spec"]["strategy"]["rollingUpdate"] == {"maxSurge": 1,
                                                                   "maxUnavailable": 0}
        assert budgets[name]["spec"]["maxUnavailable"] == 1
        consumer = manifest.named(name).consumer
        grace = deployment["spec"]["template"]["spec"]["terminationGracePeriodSeconds"]
        assert grace == (k8s.CONSUMER_GRACE_S if consumer else k8s.HTTP_GRACE_S + k8s.PRE_STOP_S)
    assert k8s.CONNECT in budgets


def test_liveness_outlasts_a_database_outage_of_minutes() -> None:
    for deployment in named("Deployment").values():
        (container,) = deployment["spec"]["template"]["spec"]["containers"]
        live = container["livenessProbe"]
        assert live["periodSeconds"] * live["failureThreshold"] >= 600


def test_no_secret_is_rendered_and_passwords_are_files_or_references() -> None:
    assert "Secret" not in {o["kind"] for o in objects()}
    values: list[tuple[str, str]] = []
    for body in objects():
        values += list(body.get("data", {}).items())
        for pod in pod_specs(body):
            for container in [*pod.get("initContainers", []), *pod["containers"]]:
                values += [(e["name"], e["value"]) for e in container.get("env", [])
                           if "value" in e]
    passwords = {name: value for name, value in values
                 if re.search("PASSWORD|API_KEY|TOKEN", name)}
    assert passwords, "the check found no password setting at all"
    for name, value in passwords.items():
        assert name.endswith("_FILE") or re.fullmatch(r"\$\{dir:[^}]+\}", value), name
    jaas = [value for name, value in values if name.endswith("SASL_JAAS_CONFIG")]
    assert jaas and all('password="${dir:' in value for value in jaas)


def pod_specs(body: dict[str, Any]) -> list[dict[str, Any]]:
    template = body.get("spec", {}).get("template")
    return [template["spec"]] if template else []


def test_connect_is_the_debezium_the_embedded_stack_validates() -> None:
    pom = (REPO / "infra" / "kafka" / "pom.xml").read_text()
    assert f"<debezium.version>{k8s.DEBEZIUM_VERSION}</debezium.version>" in pom
    connect = named("StatefulSet")[k8s.CONNECT]
    assert connect["spec"]["replicas"] == 2
    (container,) = connect["spec"]["template"]["spec"]["containers"]
    assert container["image"].endswith(f":{k8s.DEBEZIUM_VERSION}")
    assert container["readinessProbe"]["httpGet"] == {"path": "/", "port": "rest"}
    assert named("Service")[k8s.CONNECT]["spec"]["clusterIP"] == "None"
