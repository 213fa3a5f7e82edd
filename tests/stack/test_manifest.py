"""A participant is one folder plus one manifest entry: everything else sees it.

A throw-away participant (``shipping``: a consumer with its own database and outbox) is
added to a copy of the manifest, and each reader that used to keep a list of its own is
asked about it through the function it really uses. Pure: nothing is started.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from choreo.chaos.plan import check_targets, default_targets
from choreo.cli.contracts import declarations, definitions, subscriptions
from choreo.outbox import Handler, OutboxWriter, ReceivedEvent, ServiceDefinition
from choreo.schemas.catalog import SCHEMA_DIR, SchemaCatalog
from choreo.stack import k8s, launcher, manifest, restart, supervisor
from choreo.stack.errors import ConfigError
from choreo.stack.relays import relay_components
from choreo.stack.services import consumer_processes, service_components
from choreo.stack.settings import LINK_DEPENDENCIES, StackSettings


def build_handlers(writer: OutboxWriter) -> dict[str, Handler]:
    def confirmed(event: ReceivedEvent, conn: Any) -> None:
        """Ships what was confirmed; rejects nothing, but says it could."""

    return {"OrderConfirmed": confirmed}


DEFINITION = ServiceDefinition("shipping", Path("unused.sql"), build_handlers,
                               schemas=SCHEMA_DIR, emits=("OrderRejected",))
SHIPPING = manifest.Participant(
    "shipping", "choreo.services.shipping", "shipping", 18089, "CHOREO_SHIPPING_METRICS_PORT",
    consumer=True, definition=f"{__name__}:DEFINITION")


@pytest.fixture
def with_shipping(monkeypatch: pytest.MonkeyPatch) -> None:
    """Before the intake, as a new consumer would be added."""
    entries = list(manifest.MANIFEST)
    entries.insert(entries.index(manifest.named("orders-api")), SHIPPING)
    monkeypatch.setattr(manifest, "MANIFEST", tuple(entries))


def settings_in(tmp_path: Path, **env: str) -> StackSettings:
    return StackSettings.from_env({"CHOREO_STATE_DIR": str(tmp_path), **env})


@pytest.mark.usefixtures("with_shipping")
def test_the_stack_starts_and_supervises_it_with_its_own_database_and_port(
        tmp_path: Path) -> None:
    settings = settings_in(tmp_path, CHOREO_SHIPPING_METRICS_PORT="28088")

    started = {c.name: c for c in service_components(settings)}
    supervised = [c.name for c in supervisor.components_for(settings, with_services=True)]

    shipping = started["shipping"]
    assert shipping.port == 28088 and settings.port_of("shipping") == 28088
    assert shipping.command[-2:] == ["-m", "choreo.services.shipping"]
    assert shipping.env["CHOREO_DATABASE_URL"].endswith("/shipping")
    assert shipping.env["CHOREO_METRICS_PORT"] == "28088"
    assert "shipping" in supervised
    assert "shipping" in manifest.databases() and "shipping" in manifest.databases(outbox=True)
    assert StackSettings.port_variables()["CHOREO_SHIPPING_METRICS_PORT"] == 18089


@pytest.mark.usefixtures("with_shipping")
def test_it_runs_as_replicas_is_drained_and_restarted_in_manifest_order(
        tmp_path: Path) -> None:
    settings = settings_in(tmp_path, CHOREO_REPLICAS="shipping=2")

    assert {"shipping", "shipping-2"} <= set(consumer_processes(settings))
    order = restart.plan(settings, [], every=True)
    assert order.index("orders-worker") < order.index("shipping") < order.index(
        "shipping-2") < order.index("orders-api")
    assert settings.replica_port("shipping", 2) == 18189


@pytest.mark.usefixtures("with_shipping")
def test_status_lists_it(tmp_path: Path) -> None:
    rows = {row.name: row for row in launcher.status(settings_in(tmp_path))}

    assert rows["shipping"].port == 18089 and rows["shipping"].pid is None


@pytest.mark.usefixtures("with_shipping")
def test_its_outbox_may_be_polled_and_its_links_cut(tmp_path: Path) -> None:
    settings = settings_in(tmp_path, CHOREO_RELAY="shipping=polling",
                           CHOREO_LINKS="shipping>postgres")

    assert [c.name for c in relay_components(settings)] == ["relay-shipping"]
    assert settings.link_pairs() == [("shipping", "postgres")]


@pytest.mark.usefixtures("with_shipping")
def test_chaos_kills_it_by_default() -> None:
    assert "shipping" in default_targets()
    check_targets(("shipping", "shipping-2", "shipping>redis"))


@pytest.mark.usefixtures("with_shipping")
def test_the_contract_check_reads_its_declarations() -> None:
    assert "shipping" in {d.name for d in definitions()}
    assert ("shipping", "OrderConfirmed") in {
        (s.consumer, s.event_type) for s in subscriptions(SchemaCatalog.load())}
    assert next(d for d in declarations() if d.service == "shipping").emits == {"OrderRejected"}


@pytest.mark.usefixtures("with_shipping")
def test_kubernetes_deploys_it() -> None:
    services = k8s.files(k8s.Target(image="choreo:test"), topics=[])["20-services.yaml"]
    assert "name: shipping\n" in services
    assert "- choreo.services.shipping\n" in services


def test_without_the_entry_nobody_sees_it(tmp_path: Path) -> None:
    """The checks above would pass on lists that hold ``shipping`` anyway."""
    settings = settings_in(tmp_path)
    assert "shipping" not in {c.name for c in service_components(settings)}
    assert "shipping" not in default_targets()
    assert "shipping" not in {d.name for d in definitions()}
    assert "shipping" not in k8s.files(k8s.Target(image="choreo:test"), topics=[])[
        "20-services.yaml"]
    with pytest.raises(ConfigError, match="CHOREO_REPLICAS='shipping=2'"):
        settings_in(tmp_path, CHOREO_REPLICAS="shipping=2").replica_count("shipping")


def test_the_manifest_names_each_process_once_and_each_port_once() -> None:
    names = [p.name for p in manifest.MANIFEST]
    assert len(set(names)) == len(names)
    assert len({p.port for p in manifest.MANIFEST}) == len(manifest.MANIFEST)
    assert len({p.port_variable for p in manifest.MANIFEST}) == len(manifest.MANIFEST)


def test_every_link_of_every_participant_fits_beside_the_services(tmp_path: Path) -> None:
    """One fault proxy per participant and dependency, all at once, with second replicas
    of every consumer: no port given twice (the proxies once ran into the services)."""
    links = ",".join(f"{service}>{dependency}" for service in manifest.linked()
                     for dependency in LINK_DEPENDENCIES)
    replicas = ",".join(f"{service}=2" for service in manifest.consumers())

    settings = settings_in(tmp_path, CHOREO_LINKS=links, CHOREO_REPLICAS=replicas)

    assert len(settings.link_pairs()) == len(manifest.linked()) * len(LINK_DEPENDENCIES)
