"""The message provider stand-in, through the notification service's own client: each
test recipient does what it says, and a key sent again never makes a second message."""

from __future__ import annotations

import threading
import uuid

import pytest

from choreo.services.notification.provider import (
    Message,
    Notifier,
    ProviderRefused,
    ProviderUnavailable,
)
from tests.notification.conftest import messages

pytestmark = pytest.mark.postgres


def message(to: str, reference: str) -> Message:
    return Message("email", to, reference, "Your order", "is confirmed")


def test_a_message_is_sent_once_per_key(notifier_url: str, ledger_dsn: str) -> None:
    notifier, reference = Notifier(notifier_url, 5.0), str(uuid.uuid4())

    first = notifier.send(f"{reference}:confirmed", message("ada@example.org", reference))
    again = notifier.send(f"{reference}:confirmed", message("ada@example.org", reference))

    assert first == again
    assert messages(ledger_dsn, reference) == [(f"{reference}:confirmed", "ada@example.org", 2)]


def test_flaky_fails_a_keys_first_attempt_and_fail_every_one(notifier_url: str,
                                                             ledger_dsn: str) -> None:
    notifier, reference = Notifier(notifier_url, 5.0), str(uuid.uuid4())
    with pytest.raises(ProviderUnavailable, match="503"):
        notifier.send(f"{reference}:a", message("ada+flaky@example.org", reference))
    notifier.send(f"{reference}:a", message("ada+flaky@example.org", reference))
    for _ in range(2):
        with pytest.raises(ProviderUnavailable, match="500"):
            notifier.send(f"{reference}:b", message("bo+fail@example.org", reference))

    assert [key for key, _, _ in messages(ledger_dsn, reference)] == [f"{reference}:a"]


def test_a_send_that_timed_out_and_its_retry_make_one_message(notifier_url: str,
                                                              ledger_dsn: str) -> None:
    """The caller gives up after 1 s, +slow answers after 1.5 s, and the retry with the
    same key is in flight meanwhile: the customer still gets one message."""
    impatient, reference = Notifier(notifier_url, 1.0), str(uuid.uuid4())
    slow = message("cy+slow@example.org", reference)
    with pytest.raises(ProviderUnavailable):
        impatient.send(f"{reference}:confirmed", slow)
    retried = threading.Thread(target=Notifier(notifier_url, 10.0).send,
                               args=(f"{reference}:confirmed", slow))
    retried.start()
    retried.join(timeout=15)

    assert len(messages(ledger_dsn, reference)) == 1


def test_a_message_the_provider_cannot_take_is_refused_for_good(notifier_url: str) -> None:
    with pytest.raises(ProviderRefused, match="422"):
        Notifier(notifier_url, 5.0).send("k", Message("pigeon", "x", "r", "s", "b"))
