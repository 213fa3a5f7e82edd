"""Who may call an intake (``outbox.access``): API keys, an authenticating proxy's header,
and an intake reachable from other machines refusing to start without either."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer
from psycopg_pool import AsyncConnectionPool

from choreo.outbox import http
from choreo.outbox.access import CALLER, AccessSettings
from choreo.outbox.errors import ConfigError

OPENAPI = Path(__file__).parents[2] / "services" / "orders" / "openapi.json"


async def write(request: web.Request) -> web.Response:
    return web.json_response({"caller": request.get(CALLER)}, status=201)


async def call(access: AccessSettings, path: str = "/orders",
               headers: dict[str, str] | None = None) -> tuple[int, dict[str, object],
                                                                dict[str, str]]:
    pool = AsyncConnectionPool("postgresql://nowhere.invalid/none", open=False)
    app = http.application("orders", pool, None, OPENAPI)  # type: ignore[arg-type]
    app.router.add_post("/orders", write)
    http.protect(app, access)
    async with TestClient(TestServer(app, host="127.0.0.1")) as client:
        response = await (client.post(path, headers=headers or {}) if path == "/orders"
                          else client.get(path))
        body = await response.json() if path != "/metrics" else {}
        return response.status, body, dict(response.headers)


def test_api_keys_from_a_file_any_of_them_in_either_header(tmp_path: Path) -> None:
    keys = tmp_path / "api-keys"
    keys.write_text("old-key\nnew-key\n")
    access = AccessSettings.from_env({"CHOREO_API_KEYS_FILE": str(keys)})
    assert "old-key" not in repr(access)
    status, body, _ = asyncio.run(call(access, headers={"Authorization": "Bearer new-key"}))
    assert status == 201 and str(body["caller"]).startswith("api-key:")
    assert "new-key" not in str(body["caller"])
    status, other, _ = asyncio.run(call(access, headers={"X-API-Key": "old-key"}))
    assert status == 201 and other["caller"] != body["caller"]


@pytest.mark.parametrize("headers", [{}, {"Authorization": "Bearer wrong"},
                                     {"Authorization": "Basic b2xkLWtleQ=="},
                                     {"X-API-Key": "old-ke"}])
def test_no_key_or_a_wrong_one_is_a_json_401(headers: dict[str, str]) -> None:
    access = AccessSettings(api_keys=("old-key",))
    status, body, response_headers = asyncio.run(call(access, headers=headers))
    assert status == 401
    assert body["error"]["code"] == "unauthorized"
    assert "Authorization: Bearer <key>" in body["error"]["message"]
    assert response_headers["WWW-Authenticate"].startswith("Bearer")


def test_probes_and_prometheus_need_no_key() -> None:
    access = AccessSettings(api_keys=("old-key",))
    assert asyncio.run(call(access, "/openapi.json"))[0] == 200
    assert asyncio.run(call(access, "/metrics"))[0] == 200


def test_an_authenticating_proxys_identity_header() -> None:
    access = AccessSettings.from_env({"CHOREO_IDENTITY_HEADER": "X-Forwarded-User"})
    status, body, _ = asyncio.run(call(access, headers={"X-Forwarded-User": "ana@shop"}))
    assert status == 201 and body["caller"] == "ana@shop"
    status, body, _ = asyncio.run(call(access, headers={"X-API-Key": "anything"}))
    assert status == 401 and "X-Forwarded-User header" in body["error"]["message"]


def test_open_on_loopback_and_refused_elsewhere_unless_said_out_loud() -> None:
    open_access = AccessSettings.from_env({})
    assert asyncio.run(call(open_access))[0] == 201
    for host in ("127.0.0.1", "localhost", "::1"):
        open_access.check_exposure(host)
    with pytest.raises(ConfigError, match="CHOREO_BIND_HOST=0.0.0.0 lets other machines"
                                          " reach this intake: set CHOREO_API_KEYS"):
        open_access.check_exposure("0.0.0.0")
    AccessSettings.from_env({"CHOREO_ALLOW_ANONYMOUS": "true"}).check_exposure("0.0.0.0")
    AccessSettings(api_keys=("k",)).check_exposure("0.0.0.0")
    with pytest.raises(ConfigError, match="both set"):
        AccessSettings.from_env({"CHOREO_API_KEYS": "k", "CHOREO_IDENTITY_HEADER": "X-User"})
