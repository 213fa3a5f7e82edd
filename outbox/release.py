"""A blocked key released: its retrying event tried again when due, or its dead letter
replayed or discarded as ``choreo dlq replay|discard`` asked, then what it parked.

Each entry is acted on by the owner of its own partition only: a key's entries can span
topics whose partitions belong to different members, and a member that went on past
its own partitions ran the same entries as the next head's owner. A replayed or retried
entry takes exactly the path of a fresh delivery (``Pipeline.attempt``).

Resumable: each entry's new status is committed as it is done, and a key whose head is
a ``parked`` entry (a release stopped half-way) is picked up again, also after a
handler said ``RetryLater``.
"""

from __future__ import annotations

import logging

from choreo.outbox import deadletter, inbox
from choreo.outbox.deadletter import DeadLetter
from choreo.outbox.errors import RetryLater
from choreo.outbox.pipeline import Failure, Pipeline, Postponed

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
            if entry.status == "dead" or not entry.due or entry.partition not in owned:
                break
            if entry.status == "discard":
                _discard(pipeline, entry)
                continue
            if not _settled(pipeline, entry):
                break
        if not deadletter.active_for_key(conn, group_id, key):
            pipeline.blocked.discard(key)


def _settled(pipeline: Pipeline, entry: DeadLetter) -> bool:
    """Try the entry's event once more; returns whether it is done with."""
    conn = pipeline.session.conn
    retrying = entry.status == "retrying"
    result = pipeline.attempt(entry.delivery, entry.retrying_for_s if retrying else None,
                              entry.attempts if retrying else 0)
    attempts = entry.attempts + (0 if isinstance(result, str) else result.attempts)
    if isinstance(result, Postponed):
        deadletter.set_status(conn, entry.seq, "retrying", reason=result.reason,
                              attempts=attempts, retry_after_s=result.after_s)
        return False
    if isinstance(result, Failure):
        if retrying:  # dead for the first time: say so where people look
            pipeline.announce_dead(entry.delivery, Failure(result.reason, attempts))
        deadletter.set_status(conn, entry.seq, "dead", reason=result.reason, attempts=attempts)
        return False
    settled = "retried" if retrying else "replayed"
    deadletter.set_status(conn, entry.seq, settled)
    pipeline.instruments.outcome(entry.delivery.event_type, settled)
    return True


def _discard(pipeline: Pipeline, entry: deadletter.DeadLetter) -> None:
    """Discarded means never handled, also when the event is read again later (a
    broker that lost its log, say): its inbox row is claimed with the status."""
    conn = pipeline.session.conn
    event_id = entry.delivery.parsed_event_id()
    with conn.transaction():
        if event_id is not None:
            inbox.claim(conn, pipeline.group_id, event_id)
        deadletter.set_status(conn, entry.seq, "discarded")
