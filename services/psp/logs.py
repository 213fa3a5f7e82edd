"""JSON-lines logging to stdout, one object per line, so logs can be grepped and parsed.

The base keys (``ts``, ``level``, ``service``, ``logger``, ``msg``, ``error``) match
``outbox.logs``, so every service's lines are searched the same way. Unlike it, every
field passed with ``extra=`` becomes a top-level key: the psp's one line per request
carries its status, duration and idempotency key next to ``order_id`` and ``trace_id``.
"""

from __future__ import annotations

import json
import logging
import sys
from datetime import UTC, datetime

STANDARD_ATTRIBUTES = frozenset(vars(logging.LogRecord("", 0, "", 0, "", None, None))) | {
    "message", "asctime", "taskName"}


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        line = {
            "ts": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname.lower(),
            "service": "psp",
            "logger": record.name,
            "msg": record.getMessage(),
        }
        line.update({k: v for k, v in vars(record).items() if k not in STANDARD_ATTRIBUTES})
        if record.exc_info:
            line["error"] = self.formatException(record.exc_info)
        return json.dumps(line, default=str)


def configure_logging() -> None:
    handler = logging.StreamHandler(sys.stdout)
    handler.setFormatter(JsonFormatter())
    logging.basicConfig(level=logging.INFO, handlers=[handler], force=True)


def trace_id(traceparent: str | None) -> str | None:
    """The trace id of a W3C ``traceparent`` header (``00-<trace>-<span>-<flags>``)."""
    parts = (traceparent or "").split("-")
    return parts[1] if len(parts) == 4 and len(parts[1]) == 32 else None
