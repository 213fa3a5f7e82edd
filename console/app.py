"""The console's HTTP side: routes, the CSRF check, and serving on 127.0.0.1.

Every page is a GET that only reads. The two state-changing requests (replay, discard a
dead letter) are POSTs that must carry the process's CSRF token in a hidden form field:
the token is a per-process secret, written only into the console's own pages, so another
site the browser visits cannot forge the request (it cannot read the pages to learn it).
A POST without it, or with a wrong one, is refused with 403 before anything is read or
written. Where ``CHOREO_OPERATOR_TOKEN`` is set, the forms also ask for that credential and
a POST without it is refused with 401: then a browser on the machine is not enough to
replay or discard, only an operator who knows the token is. Requests must also name the
console itself in ``Host`` (127.0.0.1 or localhost), which keeps a DNS-rebinding page from
reading the console as a site of its own.
"""

from __future__ import annotations

import asyncio
import hmac
import logging
import secrets
import signal
from collections.abc import Awaitable, Callable
from functools import partial
from typing import Any, TypeVar

import psycopg
from aiohttp import web

from choreo.console import pages, reads
from choreo.console.pages import CSRF_FIELD, OPERATOR_FIELD
from choreo.services.orders.domain import Status
from choreo.services.orders.store import parse_order_id
from choreo.stack import manifest
from choreo.stack.settings import StackSettings

log = logging.getLogger("console")

SETTINGS = web.AppKey("settings", StackSettings)
FORMS = web.AppKey("forms", pages.Forms)
LOCAL_HOSTS = ("127.0.0.1", "localhost")
ACTIONS = ("replay", "discard")
T = TypeVar("T")
Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


def html(body: str, status: int = 200) -> web.Response:
    return web.Response(text=body, status=status, content_type="text/html")


def refuse(request: web.Request, status: int, code: str, message: str) -> web.Response:
    """JSON for a client that asks for it (or does not want HTML), a page for a browser."""
    if "text/html" in request.headers.get("Accept", ""):
        return html(pages.problem_page(f"{status} {code.replace('_', ' ')}", message), status)
    return web.json_response({"error": {"code": code, "message": message}}, status=status)


def host_is_local(request: web.Request) -> bool:
    host = request.host.rsplit(":", 1)[0] if not request.host.startswith("[") else ""
    return host in LOCAL_HOSTS


def matches(sent: object, secret: str) -> bool:
    return isinstance(sent, str) and hmac.compare_digest(sent.encode(), secret.encode())


@web.middleware
async def guard(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Host check, CSRF check on every POST, and a page (not a traceback) for the rest."""
    if not host_is_local(request):
        return refuse(request, 403, "forbidden_host",
                      f"the console answers to 127.0.0.1 or localhost, not {request.host!r}")
    if request.method == "POST":
        form = await request.post()
        if not matches(form.get(CSRF_FIELD), request.app[FORMS].csrf_token):
            log.warning("refused a POST to %s without a valid CSRF token", request.path)
            return refuse(request, 403, "csrf_failed",
                          "missing or wrong CSRF token: reload the console's page and retry")
        operator_token = request.app[SETTINGS].operator_token
        if operator_token and not matches(form.get(OPERATOR_FIELD), operator_token):
            log.warning("refused a POST to %s without the operator token", request.path)
            return refuse(request, 401, "operator_token_required",
                          "replay and discard need the operator token (CHOREO_OPERATOR_TOKEN)")
    try:
        return await handler(request)
    except web.HTTPException:
        raise
    except psycopg.OperationalError as error:
        log.warning("database unavailable: %s", error)
        return refuse(request, 503, "database_unavailable",
                      f"a database of the stack is unreachable ({error}); is it up?")


async def blocking(request: web.Request, read: Callable[..., T], *args: Any) -> T:
    """Run a blocking read of ``console.reads`` in a thread, off the event loop."""
    return await asyncio.to_thread(partial(read, request.app[SETTINGS], *args))


async def health(request: web.Request) -> web.Response:
    return web.json_response({"status": "ok"})


async def sagas(request: web.Request) -> web.StreamResponse:
    query = request.query.get("q", "").strip()
    status = request.query.get("status") or None
    if status is not None and status not in set(Status):
        return refuse(request, 400, "bad_status", f"no status {status!r}")
    if query and parse_order_id(query) is not None:
        raise web.HTTPSeeOther(f"/sagas/{parse_order_id(query)}")
    view = await blocking(request, reads.overview, status, query)
    message = None
    if query and not view.orders:
        message = f"no order id starts with {query!r}"
    return html(pages.overview_page(view, message))


async def stuck(request: web.Request) -> web.Response:
    settings = request.app[SETTINGS]
    try:
        within_s = float(request.query.get("within", settings.reservation_ttl_s / 2))
    except ValueError:
        return refuse(request, 400, "bad_within", "within is a number of seconds")
    return html(pages.stuck_page(await blocking(request, reads.stuck, within_s)))


async def saga(request: web.Request) -> web.Response:
    order_id = request.match_info["order_id"]
    found = await blocking(request, reads.saga, order_id)
    if found is None:
        return html(pages.problem_page("No such saga", f"no order {order_id}"), 404)
    return html(pages.saga_page(found, request.app[FORMS], request.query.get("sql") == "1"))


async def dead_letters(request: web.Request) -> web.Response:
    include_done = request.query.get("all") == "1"
    entries = await blocking(request, reads.dead_letters, include_done)
    return html(pages.dead_letters_page(entries, include_done, request.app[FORMS]))


def entry_address(request: web.Request) -> tuple[str, int]:
    service, raw = request.match_info["service"], request.match_info["seq"]
    if service not in manifest.databases(outbox=True) or not raw.isdigit():
        raise web.HTTPNotFound(text=f"no dead letter {service}/{raw}")
    return service, int(raw)


async def dead_letter(request: web.Request) -> web.Response:
    service, seq = entry_address(request)
    entry = await blocking(request, reads.dead_letter, service, seq)
    if entry is None:
        return html(pages.problem_page("No such dead letter",
                                       f"no dead letter #{seq} in {service}"), 404)
    payload, problem = reads.decoded_payload(entry)
    requested = request.query.get("requested")
    notice = (f"{requested} of #{seq} requested; {entry.consumer} carries it out within a"
              " second, then what is parked behind it" if requested in ACTIONS else None)
    return html(pages.dead_letter_page(service, entry, payload, problem, request.app[FORMS],
                                       notice))


async def act(request: web.Request) -> web.StreamResponse:
    """A replay or discard request (the CSRF token was checked by ``guard``)."""
    service, seq = entry_address(request)
    action = request.match_info["action"]
    try:
        entry = await blocking(request, reads.request, service, seq, action)
    except LookupError as error:
        return refuse(request, 404, "not_found", str(error))
    except ValueError as error:
        return refuse(request, 409, "not_dead", str(error))
    log.info("%s of %s #%d requested (%s for %s)", action, service, seq, entry.event_type,
             entry.aggregate_key)
    raise web.HTTPSeeOther(f"/dead-letters/{service}/{seq}?requested={action}")


async def stock(request: web.Request) -> web.Response:
    return html(pages.stock_page(await blocking(request, reads.stock)))


def create_app(settings: StackSettings, csrf_token: str | None = None) -> web.Application:
    """The console; ``csrf_token`` is a fresh secret per process unless a test sets one."""
    app = web.Application(middlewares=[guard])
    app[SETTINGS] = settings
    app[FORMS] = pages.Forms(csrf_token or secrets.token_urlsafe(32),
                             asks_operator=bool(settings.operator_token))
    app.router.add_get("/health", health)
    app.router.add_get("/", sagas)
    app.router.add_get("/stuck", stuck)
    app.router.add_get("/sagas/{order_id}", saga)
    app.router.add_get("/dead-letters", dead_letters)
    app.router.add_get("/dead-letters/{service}/{seq}", dead_letter)
    app.router.add_post("/dead-letters/{service}/{seq}/{action:replay|discard}", act)
    app.router.add_get("/stock", stock)
    return app


async def serve(settings: StackSettings, report: Callable[[str], None]) -> None:
    """Serve on 127.0.0.1 until SIGTERM or SIGINT."""
    runner = web.AppRunner(create_app(settings), access_log=None)
    await runner.setup()
    try:
        await web.TCPSite(runner, "127.0.0.1", settings.console_port).start()
        report(f"console on http://127.0.0.1:{settings.console_port}/")
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for signum in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(signum, stop.set)
        await stop.wait()
    finally:
        await runner.cleanup()
