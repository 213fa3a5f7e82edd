"""Test recipients and what each makes the notifier do; the recipient alone decides.

===================  =========================================================
``...+fail...``      500 on every attempt: nothing is sent
``...+flaky...``     503 on the first attempt of an Idempotency-Key, sent on the next
``...+slow...``      sent after ``CHOREO_NOTIFIER_SLOW_DELAY_S`` (default 3 s), longer
                     than a caller's timeout: its retry with the same key must get
                     this message back rather than a second one
anything else        sent at once
===================  =========================================================
"""

from __future__ import annotations

from enum import Enum


class Behaviour(Enum):
    SEND = "send"
    FAIL = "fail"
    FLAKY = "flaky"
    SLOW = "slow"


def behaviour_of(recipient: str) -> Behaviour:
    for behaviour in (Behaviour.FAIL, Behaviour.FLAKY, Behaviour.SLOW):
        if f"+{behaviour.value}" in recipient:
            return behaviour
    return Behaviour.SEND
