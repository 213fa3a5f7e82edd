"""The outbox write's span tells the truth about the write: a failed insert marks it failed.

The order service runs its statements itself (the HTTP intake on an asyncio connection,
orders-worker on a plain one), inside the span ``OutboxWriter.writing`` opens. When the
statements came from a generator, a failing insert reached the span only as the
generator's close, and the span ended OK.
"""

from __future__ import annotations

import uuid

import psycopg
import pytest
from opentelemetry import trace
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from choreo.outbox import writer as writer_module
from choreo.outbox.writer import INSERT_ROW
from choreo.services.orders.domain import Transition
from choreo.services.orders.store import finish
from tests.support import WRITER


class RefusesOutboxInsert:
    """A connection whose outbox insert fails the way a full disk or a constraint would."""

    def execute(self, query: str, params: tuple[object, ...]) -> None:
        if query == INSERT_ROW:
            raise psycopg.errors.DiskFull("could not extend file")


@pytest.fixture
def exporter(monkeypatch: pytest.MonkeyPatch) -> InMemorySpanExporter:
    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    monkeypatch.setattr(writer_module, "TRACER", provider.get_tracer("test"))
    return exporter


def test_a_failed_outbox_insert_ends_its_span_as_an_error(
        exporter: InMemorySpanExporter) -> None:
    order_id = uuid.uuid4()
    with pytest.raises(psycopg.errors.DiskFull):
        finish(RefusesOutboxInsert(), WRITER, order_id,  # type: ignore[arg-type]
               Transition.cancel(str(order_id), "customer"))
    (span,) = exporter.get_finished_spans()
    assert span.name == "outbox write OrderCancelled"
    assert span.status.status_code is trace.StatusCode.ERROR
    assert [event.attributes["exception.type"] for event in span.events
            if event.attributes] == ["psycopg.errors.DiskFull"]


def test_a_written_event_ends_its_span_ok(exporter: InMemorySpanExporter) -> None:
    class Accepts:
        def execute(self, query: str, params: tuple[object, ...]) -> None:
            pass

    order_id = uuid.uuid4()
    finish(Accepts(), WRITER, order_id,  # type: ignore[arg-type]
           Transition.cancel(str(order_id), "customer"))
    (span,) = exporter.get_finished_spans()
    assert span.status.status_code is trace.StatusCode.UNSET
