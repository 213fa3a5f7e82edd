"""Debezium connector templates (``choreo.connectors``): JSON in Kafka Connect's own format,
shipped in the wheel so ``choreo connectors`` renders them wherever choreo is installed."""

from pathlib import Path

TEMPLATE_DIR = Path(__file__).resolve().parent
OUTBOX_TEMPLATE = TEMPLATE_DIR / "outbox-postgres.json"
"""The outbox connector: Debezium's PostgreSQL source with the EventRouter (docs/outbox.md)."""
