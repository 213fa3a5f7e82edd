"""JSON log lines with the ids an operator searches by: trace_id, aggregate_id, event_id.

One object per line, so logs can be grepped and parsed. Every field passed with
``extra=`` becomes a top-level key next to the base keys (``ts``, ``level``, ``service``,
``logger``, ``msg``, ``error``): a consumer's line carries its ``consumer``, ``aggregate_id``
and ``trace_id``, the psp's one line per request its status, duration and idempotency
key. Every service of choreo logs through this one formatter, so all are searched alike.
"""

from __future__ import annotations

import json
import logging
import sys
from datetime import UTC, datetime

STANDARD_ATTRIBUTES = frozenset(vars(logging.LogRecord("", 0, "", 0, "", None, None))) | {
    "message", "asctime", "taskName"}
"""What every LogRecord has; anything else on a record came in with ``extra=``."""


class JsonFormatter(logging.Formatter):
    def __init__(self, service: str) -> None:
        super().__init__()
        self.service = service

    def format(self, record: logging.LogRecord) -> str:
        line = {
            "ts": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname.lower(),
            "service": self.service,
            "logger": record.name,
            "msg": record.getMessage(),
        }
        line.update({name: value for name, value in vars(record).items()
                     if name not in STANDARD_ATTRIBUTES and value not in (None, "")})
        if record.exc_info:
            line["error"] = self.formatException(record.exc_info)
        return json.dumps(line, default=str)


def configure(service: str, level: int = logging.INFO) -> None:
    handler = logging.StreamHandler(sys.stdout)
    handler.setFormatter(JsonFormatter(service))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level)
