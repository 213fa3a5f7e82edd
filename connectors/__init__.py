"""Debezium connector templates (``choreo.connectors``): JSON in Kafka Connect's own format,
shipped in the wheel so ``choreo connectors`` renders them wherever choreo is installed."""

from pathlib import Path

TEMPLATE_DIR = Path(__file__).resolve().parent
"""The templates' folder; ``choreo.outbox.wire`` names the outbox connector's and fills it."""
