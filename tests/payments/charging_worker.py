"""``python -m tests.payments.charging_worker DSN PSP_URL EVENT_JSON``: one payments process.

Delivers one event to the payments handlers exactly as the runtime does
(``handle_once``), on a connection and a psp client of its own, and then exits. The
crash tests start it, wait until its charge is in flight at the psp, and SIGKILL it:
a real process dying mid-charge, with its transaction aborted by PostgreSQL and its
request still running at the psp.
"""

from __future__ import annotations

import json
import sys
import uuid
from dataclasses import asdict
from typing import Any

import psycopg

from choreo.outbox.delivery import ReceivedEvent
from choreo.services.payments.attempts import AttemptLog
from choreo.services.payments.psp_client import PspClient
from tests.payments.support import Harness, handlers_for

PATIENT_TIMEOUT_S = 30.0
"""Longer than any tok_slow delay: this process waits for the psp until it is killed."""


def event_to_json(event: ReceivedEvent) -> str:
    return json.dumps({**asdict(event), "event_id": str(event.event_id)})


def event_from_json(text: str) -> ReceivedEvent:
    fields: dict[str, Any] = json.loads(text)
    return ReceivedEvent(**{**fields, "event_id": uuid.UUID(fields["event_id"])})


def main(dsn: str, psp_url: str, event_json: str) -> int:
    event = event_from_json(event_json)
    with psycopg.connect(dsn, autocommit=True) as conn, \
            PspClient(psp_url, PATIENT_TIMEOUT_S) as psp, AttemptLog(dsn) as attempt_log:
        print(Harness(conn, handlers_for(psp, attempt_log), psp).deliver(event), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main(*sys.argv[1:4]))
