"""Producers and consumers upgrade independently: old and new schemas read each other."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from choreo.outbox.codec import EventCodec
from choreo.outbox.errors import EventValidationError, PoisonMessage
from choreo.schemas.catalog import SchemaCatalog

V1 = {
    "type": "record", "name": "ParcelShipped", "namespace": "choreo.parcel",
    "doc": "A parcel left the warehouse.",
    "fields": [
        {"name": "parcel_id", "type": "string", "doc": "Parcel."},
        {"name": "weight_grams", "type": "int", "doc": "Weight."},
    ],
}
V2 = {**V1, "fields": [*V1["fields"], {
    "name": "carrier", "type": ["null", "string"], "default": None, "doc": "Who carries it.",
}]}


def catalog(root: Path, *versions: dict) -> SchemaCatalog:
    folder = root / "parcel"
    folder.mkdir(parents=True, exist_ok=True)
    for number, schema in enumerate(versions, start=1):
        (folder / f"ParcelShipped.v{number}.avsc").write_text(json.dumps(schema))
    return SchemaCatalog.load(root)


def test_new_reader_reads_old_writer_with_default(tmp_path: Path) -> None:
    old_producer = EventCodec(catalog(tmp_path / "old", V1))
    data, schema = old_producer.encode("ParcelShipped", {"parcel_id": "p1", "weight_grams": 5})
    new_consumer = EventCodec(catalog(tmp_path / "new", V1, V2))
    assert new_consumer.decode("ParcelShipped", schema.reference, data) == {
        "parcel_id": "p1", "weight_grams": 5, "carrier": None}


def test_old_reader_reads_new_writer_ignoring_the_new_field(tmp_path: Path) -> None:
    new_producer = EventCodec(catalog(tmp_path / "new", V1, V2))
    data, schema = new_producer.encode(
        "ParcelShipped", {"parcel_id": "p1", "weight_grams": 5, "carrier": "postal"})
    assert schema.version == 2
    old_consumer = EventCodec(catalog(tmp_path / "new2", V1, V2), reader_versions={
        "ParcelShipped": 1})
    assert old_consumer.decode("ParcelShipped", schema.reference, data) == {
        "parcel_id": "p1", "weight_grams": 5}


def test_invalid_payload_is_rejected_before_writing(tmp_path: Path) -> None:
    codec = EventCodec(catalog(tmp_path, V1))
    with pytest.raises(EventValidationError, match="weight_grams"):
        codec.encode("ParcelShipped", {"parcel_id": "p1", "weight_grams": "heavy"})


def test_truncated_bytes_are_poison_not_a_crash(tmp_path: Path) -> None:
    codec = EventCodec(catalog(tmp_path, V1))
    data, schema = codec.encode("ParcelShipped", {"parcel_id": "p1", "weight_grams": 5})
    with pytest.raises(PoisonMessage, match="cannot decode"):
        codec.decode("ParcelShipped", schema.reference, data[:2])
    with pytest.raises(PoisonMessage, match="unknown writer schema"):
        codec.decode("ParcelShipped", "ParcelShipped.v7#ffff", data)
