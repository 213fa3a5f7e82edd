"""The outage switch: the psp failing or slow for a while, then itself again."""

from __future__ import annotations

import pytest

from choreo.services.payments.psp_client import PspClient, PspUnavailable
from tests.psp.support import Api, Ledger
from tests.support import eventually, holds

pytestmark = pytest.mark.stack


def test_a_failing_psp_answers_503_without_capturing_until_the_outage_ends(
        api: Api, ledger: Ledger, client: PspClient) -> None:
    client.start_outage("fail", 30)
    try:
        response = api.charge("key-outage", token="tok_ok")
        assert response.status_code == 503
        assert response.json()["error"]["code"] == "provider_outage"
        assert api.get("/health").json()["outage"]["mode"] == "fail"
        with pytest.raises(PspUnavailable) as failure:
            client.charge("key-outage", 1250, "EUR", "tok_ok", "order-1")
        assert failure.value.status == 503
        assert ledger.count("charges") == 0
    finally:
        client.end_outage()
    assert api.charge("key-outage", token="tok_ok").status_code == 201
    assert "outage" not in api.get("/health").json()


def test_answered_retries_give_up_on_a_psp_that_keeps_failing(
        api: Api, ledger: Ledger, psp_url: str) -> None:
    with PspClient(psp_url, timeout_s=5.0, answered_retries=2) as patient:
        patient.start_outage("fail", 30)
        try:
            with pytest.raises(PspUnavailable) as failure:
                patient.charge("key-outage-retried", 1250, "EUR", "tok_ok", "order-2")
            assert failure.value.status == 503
            assert ledger.count("charges") == 0
        finally:
            patient.end_outage()


def test_a_slow_psp_times_the_caller_out_and_captures_all_the_same(
        api: Api, ledger: Ledger, psp_url: str) -> None:
    with PspClient(psp_url, timeout_s=0.3) as impatient:
        impatient.start_outage("slow", 30, delay_s=1.0)
        try:
            with pytest.raises(PspUnavailable) as failure:
                impatient.charge("key-slow-outage", 1250, "EUR", "tok_ok", "order-1")
            assert failure.value.status is None  # no answer at all: a timeout
        finally:
            impatient.end_outage()
    # The psp commits the capture after its 1 s delay, however late it runs.
    eventually(lambda: holds(ledger.count("charges") == 1), timeout_s=15)
    replay = api.charge("key-slow-outage", token="tok_ok")
    assert (replay.status_code, replay.headers.get("Idempotent-Replayed")) == (201, "true")


@pytest.mark.parametrize(("body", "param"), [
    ({"mode": "down", "seconds": 1}, "mode"),
    ({"mode": "fail"}, "seconds"),
    ({"mode": "fail", "seconds": 0}, "seconds"),
    ({"mode": "slow", "seconds": 1, "delay_s": True}, "delay_s"),
])
def test_a_bad_switch_is_a_400_naming_the_field(api: Api, body: dict, param: str) -> None:
    response = api.post("/admin/outage", body)
    assert response.status_code == 400
    assert response.json()["error"]["param"] == param
