"""``choreo dlq replay|discard`` carried out: a blocked key's dead letter, then what it parked.

Only the owner of the partition of a key's head entry acts on it
(``deadletter.keys_to_release``), so a key is released by one member of the group. A
replayed entry takes exactly the path of a fresh delivery (``Pipeline.attempt``).

Resumable: each entry's new status is committed as it is done, and a key whose head is
a ``parked`` entry (a release stopped half-way) is picked up again, also after a
handler said ``RetryLater``.
"""

from __future__ import annotations

import logging

from outbox import deadletter, inbox
from outbox.errors import RetryLater
from outbox.pipeline import Failure, Pipeline

log = logging.getLogger(__name__)


def process_requests(pipeline: Pipeline, owned: set[tuple[str, int]]) -> None:
    """Release what was asked for on the partitions in ``owned``; a ``RetryLater`` leaves
    the rest for a later round."""
    try:
        _release_requested(pipeline, owned)
    except RetryLater as signal:
        log.info("dead-letter requests wait: %s", signal, extra=pipeline.instruments.fields)


def _release_requested(pipeline: Pipeline, owned: set[tuple[str, int]]) -> None:
    pipeline.reload_blocked()
    conn, group_id = pipeline.session.conn, pipeline.group_id
    for key in deadletter.keys_to_release(conn, group_id, owned):
        for entry in deadletter.active_for_key(conn, group_id, key):
            if entry.status == "dead":
                break
            if entry.status == "discard":
                _discard(pipeline, entry)
                continue
            result = pipeline.attempt(entry.delivery)
            if isinstance(result, Failure):
                deadletter.set_status(conn, entry.seq, "dead", reason=result.reason,
                                      attempts=entry.attempts + result.attempts)
                break
            deadletter.set_status(conn, entry.seq, "replayed")
            pipeline.instruments.outcome(entry.delivery.event_type, "replayed")
        if not deadletter.active_for_key(conn, group_id, key):
            pipeline.blocked.discard(key)


def _discard(pipeline: Pipeline, entry: deadletter.DeadLetter) -> None:
    """Discarded means never handled, also when the event is read again later (a
    broker that lost its log, say): its inbox row is claimed with the status."""
    conn = pipeline.session.conn
    event_id = entry.delivery.parsed_event_id()
    with conn.transaction():
        if event_id is not None:
            inbox.claim(conn, pipeline.group_id, event_id)
        deadletter.set_status(conn, entry.seq, "discarded")
