"""What the users API accepts, rule by rule, each refusal naming its field. Pure."""

from __future__ import annotations

import pytest

from choreo.outbox import http
from choreo.services.users.domain import (
    Preferences,
    parse_preferences,
    parse_registration,
    parse_status,
)

PREFERENCES = {"channel": "email", "address": "Main St 1, Berlin", "marketing_allowed": True}
REGISTRATION = {"name": "Ada", "email": "ada@example.org", "preferences": PREFERENCES}


def test_a_registration_is_read_whole() -> None:
    registration = parse_registration(REGISTRATION)

    assert (registration.name, registration.email, registration.phone) == (
        "Ada", "ada@example.org", None)
    assert registration.preferences == Preferences("email", "Main St 1, Berlin", True)


@pytest.mark.parametrize(("body", "field"), [
    ({**REGISTRATION, "name": ""}, "name"),
    ({**REGISTRATION, "email": "ada"}, "email"),
    ({**REGISTRATION, "phone": "call me"}, "phone"),
    ({**REGISTRATION, "nickname": "A"}, "nickname"),
    ({**REGISTRATION, "preferences": {**PREFERENCES, "channel": "pigeon"}}, "preferences.channel"),
    ({**REGISTRATION, "preferences": {**PREFERENCES, "colour": "red"}}, "preferences.colour"),
    ({**REGISTRATION, "preferences": {**PREFERENCES, "marketing_allowed": "yes"}},
     "preferences.marketing_allowed"),
    ({**REGISTRATION, "preferences": "email"}, "preferences"),
    ({"name": "Ada", "preferences": PREFERENCES}, "preferences.channel"),  # email, none given
    ({"name": "Ada", "email": "a@b.c", "preferences": {**PREFERENCES, "channel": "sms"}},
     "preferences.channel"),
    ([], "$"),
])
def test_a_bad_registration_names_its_field(body: object, field: str) -> None:
    with pytest.raises(http.InvalidRequest) as refused:
        parse_registration(body)
    assert refused.value.field == field


def test_none_needs_no_contact_and_marketing_defaults_to_no() -> None:
    preferences = parse_preferences({"channel": "none", "address": "Berlin"})

    assert preferences == Preferences("none", "Berlin", False)
    assert parse_registration({"name": "Bo", "preferences": {"channel": "none",
                                                             "address": "Berlin"}}).email is None


def test_a_status_needs_a_boolean_and_a_reason() -> None:
    assert parse_status({"blocked": True, "reason": "chargebacks"}) == (True, "chargebacks")
    for body, field in (({"blocked": "yes", "reason": "r"}, "blocked"),
                        ({"blocked": True}, "reason")):
        with pytest.raises(http.InvalidRequest) as refused:
            parse_status(body)
        assert refused.value.field == field
