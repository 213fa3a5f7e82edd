"""Links: a service's connection to PostgreSQL, Redis or the psp, routed through a fault
proxy so that a chaos run can cut it without killing either end.

``CHOREO_LINKS=payments>postgres,payments>psp`` (``choreo up`` with it) starts one more
supervised process, ``links`` (``python -m choreo.stack.links``): a ``stack.proxy.TcpProxy``
per link on ``links_port + 1``, ``+ 2``, ... in the order given, and a control endpoint on
``links_port`` (``GET /links``; ``PUT /links/payments>postgres`` with ``{"mode":
"blackhole"}``). The named service gets the proxy's address in place of the real one
(every replica of it: they share the link). The broker is not offered: Kafka clients
connect to the addresses the broker advertises, not to the one they bootstrapped from,
so a proxy in front of its port would carry only the first request.
"""

from __future__ import annotations

import json
import os
import signal
import sys
import threading
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import unquote, urlsplit, urlunsplit

import requests

from choreo.stack.components import Component, quietly
from choreo.stack.proxy import MODES, TcpProxy
from choreo.stack.settings import StackSettings
from choreo.stack.supervision import settings_env

DEPENDENCIES = {"postgres": ("CHOREO_DATABASE_URL", "CHOREO_TELEMETRY_URL"),
                "redis": ("CHOREO_REDIS_URL",), "psp": ("CHOREO_PSP_URL",),
                "notifier": ("CHOREO_NOTIFIER_URL",)}
"""The variables of a service's environment that reach each dependency."""


@dataclass(frozen=True)
class Link:
    service: str
    dependency: str
    port: int
    """Where its proxy listens."""

    @property
    def name(self) -> str:
        return f"{self.service}>{self.dependency}"


def links_of(settings: StackSettings) -> list[Link]:
    return [Link(service, dependency, settings.links_port + n)
            for n, (service, dependency) in enumerate(settings.link_pairs(), 1)]


def target_port(settings: StackSettings, dependency: str) -> int:
    return {"postgres": settings.postgres_port, "redis": settings.redis_port,
            "psp": settings.port_of("psp"), "notifier": settings.port_of("notifier")}[dependency]


def routed(settings: StackSettings, service: str, env: dict[str, str]) -> dict[str, str]:
    """``env`` of ``service`` with each of its links' addresses moved to the proxy."""
    for link in links_of(settings):
        if link.service != service:
            continue
        for variable in DEPENDENCIES[link.dependency]:
            parts = urlsplit(env[variable])
            user = f"{parts.username}@" if parts.username else ""
            env = {**env, variable: urlunsplit(
                parts._replace(netloc=f"{user}127.0.0.1:{link.port}"))}
    return env


LINKS = "links"


def links_component(settings: StackSettings) -> Component:
    """Started after Redis and before anything that uses a link; a link that is cut
    never makes the process unhealthy, only its control endpoint does."""
    def healthy() -> bool:
        return requests.get(control_url(settings), timeout=2).status_code == 200

    return Component(LINKS, settings.links_port, [sys.executable, "-m", "choreo.stack.links"],
                     quietly(healthy), env=settings_env(settings), needed_first=True)


def control_url(settings: StackSettings) -> str:
    return f"http://127.0.0.1:{settings.links_port}/links"


def set_mode(settings: StackSettings, name: str, mode: str, delay_s: float | None = None
             ) -> None:
    """Switch one link (``payments>postgres``) to ``mode``; raises if it cannot."""
    body = {"mode": mode, **({"delay_s": delay_s} if delay_s is not None else {})}
    response = requests.put(f"{control_url(settings)}/{name}", json=body, timeout=5)
    response.raise_for_status()


def modes(settings: StackSettings) -> dict[str, str]:
    response = requests.get(control_url(settings), timeout=5)
    response.raise_for_status()
    return dict(response.json())


def serve(settings: StackSettings) -> ThreadingHTTPServer:
    """The proxies, and the control endpoint in front of them."""
    proxies = {link.name: TcpProxy(("127.0.0.1", target_port(settings, link.dependency)),
                                   link.port) for link in links_of(settings)}

    class Control(BaseHTTPRequestHandler):
        def answer(self, status: int, body: object) -> None:
            data = json.dumps(body).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def do_GET(self) -> None:  # noqa: N802 - the standard library's naming
            if self.path == "/links":
                self.answer(200, {name: proxy.mode for name, proxy in proxies.items()})
            else:
                self.answer(404, {"error": "not found"})

        def do_PUT(self) -> None:  # noqa: N802
            name = unquote(self.path.removeprefix("/links/"))
            try:
                body = json.loads(self.rfile.read(int(self.headers.get("Content-Length", 0))))
                mode = body["mode"]
                proxy = proxies[name]
            except (ValueError, KeyError, TypeError):
                self.answer(400, {"error": f"PUT /links/NAME with {{\"mode\": ...}}, NAME of"
                                           f" {sorted(proxies)}, mode of {list(MODES)}"})
                return
            if mode not in MODES:
                self.answer(400, {"error": f"mode must be one of {list(MODES)}"})
                return
            if "delay_s" in body:
                proxy.delay_s = float(body["delay_s"])
            proxy.set_mode(mode)
            self.answer(200, {name: mode})

        def log_message(self, format: str, *args: object) -> None:  # noqa: A002
            """One line per switch comes from the chaos report instead."""

    server = ThreadingHTTPServer(("127.0.0.1", settings.links_port), Control)
    threading.Thread(target=server.serve_forever, name="links-control", daemon=True).start()
    return server


def main() -> int:
    settings = StackSettings.from_env(os.environ)
    serve(settings)
    stopped = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stopped.set())
    print(f"links: {', '.join(link.name for link in links_of(settings))}", file=sys.stderr)
    stopped.wait()
    return 0


if __name__ == "__main__":
    sys.exit(main())
