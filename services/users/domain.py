"""What a registration and a change of preferences must look like.

Validated completely before the database is touched, each rule naming its field, so a bad
request writes nothing. A channel needs its contact: ``email`` an email address, ``sms``
a phone number; ``none`` needs neither.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

from choreo.outbox import http

CHANNELS = ("email", "sms", "none")
MAX_TEXT = 200
EMAIL = re.compile(r"^[^@\s]+@[^@\s]+\.[^@\s]+$")
PHONE = re.compile(r"^\+?[0-9][0-9 ]{5,19}$")


@dataclass(frozen=True)
class Preferences:
    channel: str
    address: str
    marketing_allowed: bool

    def event(self) -> dict[str, Any]:
        return {"channel": self.channel, "address": self.address,
                "marketing_allowed": self.marketing_allowed}


@dataclass(frozen=True)
class Registration:
    name: str
    email: str | None
    phone: str | None
    preferences: Preferences


def text(body: dict[str, Any], field: str, prefix: str = "", *, optional: bool = False
         ) -> str | None:
    value = body.get(field)
    if value is None and optional:
        return None
    if not isinstance(value, str) or not value.strip() or len(value) > MAX_TEXT \
            or "\x00" in value:
        raise http.InvalidRequest(prefix + field, f"required, a non-empty string of at most"
                                                  f" {MAX_TEXT} characters")
    return value.strip()


def an_object(value: object, field: str, allowed: set[str]) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise http.InvalidRequest(field, "must be a JSON object")
    unknown = sorted(set(value) - allowed)
    if unknown:
        raise http.InvalidRequest(unknown[0] if field == "$" else f"{field}.{unknown[0]}",
                                  "unknown field")
    return value


def parse_preferences(value: object, prefix: str = "") -> Preferences:
    body = an_object(value, prefix.rstrip(".") or "$", {"channel", "address",
                                                         "marketing_allowed"})
    channel = body.get("channel")
    if channel not in CHANNELS:
        raise http.InvalidRequest(prefix + "channel", f"one of {', '.join(CHANNELS)}")
    marketing = body.get("marketing_allowed", False)
    if not isinstance(marketing, bool):
        raise http.InvalidRequest(prefix + "marketing_allowed", "true or false")
    return Preferences(channel, text(body, "address", prefix) or "", marketing)


def reachable(preferences: Preferences, email: str | None, phone: str | None,
              field: str) -> None:
    """A channel the customer cannot be reached on is refused, naming the channel."""
    if preferences.channel == "email" and email is None:
        raise http.InvalidRequest(field, "email needs the customer's email address")
    if preferences.channel == "sms" and phone is None:
        raise http.InvalidRequest(field, "sms needs the customer's phone number")


def parse_registration(value: object) -> Registration:
    body = an_object(value, "$", {"name", "email", "phone", "preferences"})
    email = text(body, "email", optional=True)
    if email is not None and not EMAIL.match(email):
        raise http.InvalidRequest("email", "not an email address")
    phone = text(body, "phone", optional=True)
    if phone is not None and not PHONE.match(phone):
        raise http.InvalidRequest("phone", "not a phone number (digits, spaces, a leading +)")
    preferences = parse_preferences(body.get("preferences"), "preferences.")
    reachable(preferences, email, phone, "preferences.channel")
    return Registration(text(body, "name") or "", email, phone, preferences)


def parse_status(value: object) -> tuple[bool, str]:
    body = an_object(value, "$", {"blocked", "reason"})
    if not isinstance(body.get("blocked"), bool):
        raise http.InvalidRequest("blocked", "required, true or false")
    return body["blocked"], text(body, "reason") or ""
