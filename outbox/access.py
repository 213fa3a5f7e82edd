"""Who may call an HTTP intake: API keys, or the identity an authenticating proxy vouches for.

On a laptop the intakes listen on 127.0.0.1 and anyone who can reach them is the
developer. Listening anywhere else (compose, Kubernetes: ``CHOREO_BIND_HOST=0.0.0.0``),
an intake that accepts anonymous writes is an open door to the saga, so there it must be
told how callers prove who they are, or it does not start:

- ``CHOREO_API_KEYS`` (or ``CHOREO_API_KEYS_FILE``, one key per line): a caller sends
  ``Authorization: Bearer <key>`` or ``X-API-Key: <key>``; keys compare in constant time.
  Several keys let one be rotated out while the next is already in use.
- ``CHOREO_IDENTITY_HEADER=X-Forwarded-User``: an authenticating proxy in front (an
  ingress with OAuth2 Proxy, an API gateway) has checked the caller and says who it is in
  that header; a request without it is refused. Only safe where nothing but the proxy can
  reach the intake, which is the platform's to ensure (a NetworkPolicy, a sidecar).
- ``CHOREO_ALLOW_ANONYMOUS=true``: open on purpose, said out loud.

``/health``, ``/metrics`` and ``/openapi.json`` stay open: probes and Prometheus do not
carry credentials, and none of them writes. A refusal is the intakes' usual JSON error,
401 ``unauthorized`` with ``WWW-Authenticate``, naming what was expected.
"""

from __future__ import annotations

import hashlib
import hmac
import ipaddress
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field

from aiohttp import web

from choreo.outbox import config
from choreo.outbox.errors import ConfigError

OPEN_PATHS = frozenset({"/health", "/metrics", "/openapi.json"})
KEY_HEADER = "X-API-Key"
CALLER = web.RequestKey("caller", str)
"""Who an authenticated request is from, for a handler that records who asked."""


@dataclass(frozen=True)
class AccessSettings:
    api_keys: tuple[str, ...] = field(default=(), repr=False)
    identity_header: str = ""
    allow_anonymous: bool = False

    @classmethod
    def from_env(cls, env: Mapping[str, str]) -> AccessSettings:
        keys = config.text(env, "CHOREO_API_KEYS")
        settings = cls(
            api_keys=tuple(key.strip() for key in keys.replace(",", "\n").splitlines()
                           if key.strip()),
            identity_header=config.text(env, "CHOREO_IDENTITY_HEADER"),
            allow_anonymous=config.boolean(env, "CHOREO_ALLOW_ANONYMOUS", False),
        )
        if settings.api_keys and settings.identity_header:
            raise ConfigError("CHOREO_API_KEYS and CHOREO_IDENTITY_HEADER are both set: an"
                              " intake trusts one of them")
        return settings

    def check_exposure(self, bind_host: str) -> None:
        """An intake others can reach must authenticate, or say it is open on purpose.
        Asked by the intakes only: a consumer's port serves nothing but health and metrics."""
        if not self.authenticates and not self.allow_anonymous and not is_loopback(bind_host):
            raise ConfigError(f"CHOREO_BIND_HOST={bind_host} lets other machines reach this"
                              " intake: set CHOREO_API_KEYS (or CHOREO_API_KEYS_FILE) or"
                              " CHOREO_IDENTITY_HEADER, or CHOREO_ALLOW_ANONYMOUS=true to"
                              " leave it open on purpose")

    @property
    def authenticates(self) -> bool:
        return bool(self.api_keys or self.identity_header)

    def caller(self, request: web.Request) -> str | None:
        """Who the request is from, or None when it proves nothing acceptable."""
        if self.identity_header:
            return request.headers.get(self.identity_header) or None
        offered = request.headers.get(KEY_HEADER, "")
        scheme, _, token = request.headers.get("Authorization", "").partition(" ")
        if scheme.lower() == "bearer":
            offered = token.strip()
        if offered and any(hmac.compare_digest(offered.encode(), key.encode())
                           for key in self.api_keys):
            # A digest: tells keys apart (rate limits, logs) without holding the secret.
            return "api-key:" + hashlib.blake2b(offered.encode(), digest_size=8).hexdigest()
        return None

    def expected(self) -> str:
        if self.identity_header:
            return f"the {self.identity_header} header of the authenticating proxy"
        return f"an API key as 'Authorization: Bearer <key>' or '{KEY_HEADER}: <key>'"


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


Refusal = Callable[[str], web.StreamResponse]


def middleware(access: AccessSettings, refuse: Refusal) -> Callable[..., Awaitable[
        web.StreamResponse]]:
    """Refuses an unauthenticated request before its handler reads or writes anything;
    ``refuse(message)`` makes the intake's JSON 401. The caller is kept as
    ``request[CALLER]``."""

    @web.middleware
    async def authenticate(request: web.Request, handler: Callable[
            [web.Request], Awaitable[web.StreamResponse]]) -> web.StreamResponse:
        if access.authenticates and request.path not in OPEN_PATHS:
            caller = access.caller(request)
            if caller is None:
                return refuse(f"this intake wants {access.expected()}")
            request[CALLER] = caller
        return await handler(request)

    return authenticate
