"""Prometheus metrics per consumer, and a tiny HTTP server for /metrics and /health.

Consumer processes are synchronous (confluent-kafka + psycopg), so the endpoint runs in
a daemon thread from the standard library rather than pulling in an event loop.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from prometheus_client import CONTENT_TYPE_LATEST, Counter, Gauge, Histogram, generate_latest

EVENTS = Counter("choreo_events_total", "Events seen by a consumer, by outcome",
                 ["consumer", "event_type", "outcome"])
HANDLER_SECONDS = Histogram(
    "choreo_handler_seconds", "Handler transaction time", ["consumer", "event_type"],
    buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5),
)
HOP_SECONDS = Histogram(
    "choreo_hop_seconds", "From an event's commit (its ce_time) to its receipt by this"
    " consumer: Debezium plus the broker", ["consumer", "topic"],
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30),
)
RETRIES = Counter("choreo_retries_total", "Failed attempts that were retried",
                  ["consumer", "event_type"])
LAG = Gauge("choreo_consumer_lag", "Messages behind the partition's high watermark",
            ["consumer", "topic", "partition"])

PAUSED = Gauge("choreo_consumer_paused",
               "1 while the consumer holds its partitions back because a dependency said"
               " retry later (an open circuit breaker)", ["consumer"])
PAUSES = Counter("choreo_consumer_pauses_total", "Times the consumer paused its partitions",
                 ["consumer"])
CIRCUIT_STATE = Gauge("choreo_circuit_state",
                      "1 for the circuit breaker's current state, 0 for the others",
                      ["circuit", "state"])
CIRCUIT_TRANSITIONS = Counter("choreo_circuit_transitions_total",
                              "State changes of a circuit breaker, by the state entered",
                              ["circuit", "state"])


def serve(port: int, health: Callable[[], dict[str, object]], host: str = "127.0.0.1"
          ) -> ThreadingHTTPServer:
    """Serve ``/metrics`` and ``/health`` on host:port in a daemon thread."""

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:  # noqa: N802 - the standard library's naming
            if self.path == "/metrics":
                body, content_type, code = generate_latest(), CONTENT_TYPE_LATEST, 200
            elif self.path == "/health":
                state = health()
                code = 200 if state.get("status") == "ok" else 503
                body, content_type = json.dumps(state).encode(), "application/json"
            else:
                body, content_type, code = b'{"error": "not found"}', "application/json", 404
            self.send_response(code)
            self.send_header("Content-Type", content_type)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, format: str, *args: object) -> None:  # noqa: A002
            """Scrapes every few seconds would drown the service's own log lines."""

    server = ThreadingHTTPServer((host, port), Handler)
    threading.Thread(target=server.serve_forever, name="metrics", daemon=True).start()
    return server
